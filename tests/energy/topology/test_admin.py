"""The admin's page per site: its nodes and edges edited inline, under the API's rules."""

from __future__ import annotations

import pytest
from django.test import Client

from energy.topology.models import Edge, Node, TopologySettings
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def _url(site) -> str:
    return f"/admin/energy/sitetopology/{site.pk}/change/"


def _post(site, *, nodes=(), edges=(), existing_nodes=()) -> dict:
    data = {
        "topology_settings-TOTAL_FORMS": "0",
        "topology_settings-INITIAL_FORMS": "0",
        "topology_nodes-TOTAL_FORMS": str(len(existing_nodes) + len(nodes)),
        "topology_nodes-INITIAL_FORMS": str(len(existing_nodes)),
        "topology_edges-TOTAL_FORMS": str(len(edges)),
        "topology_edges-INITIAL_FORMS": "0",
    }
    rows = [{"id": node.pk, "name": node.name, "kind": node.kind} for node in existing_nodes] + list(nodes)
    for index, row in enumerate(rows):
        for key, value in {"sign_convention": "import_positive", "site": site.pk, **row}.items():
            data[f"topology_nodes-{index}-{key}"] = value
    for index, row in enumerate(edges):
        for key, value in {"site": site.pk, **row}.items():
            data[f"topology_edges-{index}-{key}"] = value
    return data


def test_a_manager_adds_nodes_and_an_edge_on_the_sites_page(manager, site, other_org):
    factories.SiteFactory(organization=other_org, name="Hidden")
    listing = manager.get("/admin/energy/sitetopology/")
    assert listing.status_code == 200 and site.name in listing.text and "Hidden" not in listing.text
    assert manager.get(_url(site)).status_code == 200

    response = manager.post(
        _url(site),
        _post(site, nodes=[{"name": "Grid", "kind": "grid_connection"}, {"name": "Board", "kind": "switchboard"}]),
    )
    assert response.status_code == 302, response.content[:2000]
    grid, board = Node.objects.filter(site=site).order_by("id")
    assert grid.organization_id == site.organization_id

    response = manager.post(
        _url(site),
        _post(
            site,
            existing_nodes=[grid, board],
            edges=[{"parent": grid.pk, "child": board.pk, "resistance_ohm_per_phase": "0.02"}],
        ),
    )
    assert response.status_code == 302
    assert Edge.objects.get().resistance_ohm_per_phase == 0.02


def test_an_edge_closing_a_cycle_is_a_form_error(manager, site):
    a, b = factories.NodeFactory(site=site, name="A"), factories.NodeFactory(site=site, name="B")
    factories.EdgeFactory(parent=a, child=b)
    data = _post(site, existing_nodes=[a, b], edges=[{"parent": b.pk, "child": a.pk}])
    response = manager.post(_url(site), data)
    assert response.status_code == 200
    assert "would close a cycle" in response.text
    assert Edge.objects.count() == 1


def test_settings_saved_in_the_admin_keep_the_several_parents_rule(manager, site):
    settings = TopologySettings.objects.create(organization=site.organization, site=site, allow_multiple_parents=True)
    a, b, c = (factories.NodeFactory(site=site, name=name) for name in ("A", "B", "C"))
    factories.EdgeFactory(parent=a, child=c)
    factories.EdgeFactory(parent=b, child=c)
    data = _post(site, existing_nodes=[a, b, c])
    # The settings form with allow_multiple_parents unticked (absent) and a new stale limit.
    data.update(
        {
            "topology_settings-TOTAL_FORMS": "1",
            "topology_settings-INITIAL_FORMS": "1",
            "topology_settings-0-id": settings.pk,
            "topology_settings-0-site": site.pk,
            "topology_settings-0-stale_after_seconds": "120",
        }
    )
    response = manager.post(_url(site), data, follow=True)
    assert f"node {c.pk} (C) has parents {a.pk}, {b.pk}" in response.text
    settings.refresh_from_db()
    assert settings.allow_multiple_parents is True and settings.stale_after_seconds == 300

    data["topology_settings-0-allow_multiple_parents"] = "on"
    assert manager.post(_url(site), data).status_code == 302
    settings.refresh_from_db()
    assert settings.allow_multiple_parents is True and settings.stale_after_seconds == 120


def test_two_new_edges_closing_a_cycle_together_are_a_form_error_and_nothing_is_saved(manager, site):
    # Each edge is valid against the stored graph; only saved together do they close a cycle,
    # which the services refuse: the page shows it and keeps the rows as they were.
    a, b = factories.NodeFactory(site=site, name="A"), factories.NodeFactory(site=site, name="B")
    data = _post(
        site,
        existing_nodes=[a, b],
        edges=[{"parent": a.pk, "child": b.pk}, {"parent": b.pk, "child": a.pk}],
    )
    data["topology_nodes-0-name"] = "A renamed"
    response = manager.post(_url(site), data)
    assert response.status_code == 200
    assert "Nothing was saved" in response.text and "would close a cycle" in response.text
    assert Edge.objects.count() == 0
    assert Node.objects.get(pk=a.pk).name == "A"


def test_two_new_parents_of_one_node_are_a_form_error_where_the_site_allows_one(manager, site):
    a, b, c = (factories.NodeFactory(site=site, name=name) for name in ("A", "B", "C"))
    edges = [{"parent": a.pk, "child": c.pk}, {"parent": b.pk, "child": c.pk}]
    response = manager.post(_url(site), _post(site, existing_nodes=[a, b, c], edges=edges))
    assert response.status_code == 200
    assert f"node {c.pk} (C) already has parent node" in response.text
    assert Edge.objects.count() == 0

    response = manager.post(_url(site), _post(site, existing_nodes=[a, b, c], edges=edges[:1]))
    assert response.status_code == 302
    assert list(Edge.objects.values_list("parent", "child")) == [(a.pk, c.pk)]
