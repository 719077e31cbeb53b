"""The graph rules: a DAG per site, one node per meter, no foreign nodes; nothing written on refusal."""

from __future__ import annotations

import pytest

from energy.topology import services
from energy.topology.models import Edge, Node, TopologySettings
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(site):
    """a → b → c on one site."""
    a, b, c = (factories.NodeFactory(site=site, name=name) for name in "abc")
    services.edge_create(parent=a, child=b)
    services.edge_create(parent=b, child=c)
    return a, b, c


def test_a_cycle_is_refused_naming_its_nodes(chain):
    a, b, c = chain
    with pytest.raises(services.TopologyInvalid) as caught:
        services.edge_create(parent=c, child=a)
    assert caught.value.nodes == sorted([a.pk, b.pk, c.pk])
    assert "cycle" in caught.value.errors["child"]
    assert Edge.objects.count() == 2


def test_a_self_loop_is_refused(site):
    node = factories.NodeFactory(site=site)
    with pytest.raises(services.TopologyInvalid) as caught:
        services.edge_create(parent=node, child=node)
    assert caught.value.nodes == [node.pk]
    assert "self-loop" in caught.value.errors["child"]


def test_an_edge_across_sites_is_refused(site):
    here = factories.NodeFactory(site=site)
    there = factories.NodeFactory(site=factories.SiteFactory(organization=site.organization))
    with pytest.raises(services.TopologyInvalid) as caught:
        services.edge_create(parent=here, child=there)
    assert caught.value.nodes == sorted([here.pk, there.pk])
    assert "one site" in caught.value.errors["child"]


def test_a_node_of_another_organization_reads_as_missing(site, other_org):
    here = factories.NodeFactory(site=site)
    foreign = factories.NodeFactory(site=factories.SiteFactory(organization=other_org))
    with pytest.raises(services.TopologyInvalid) as caught:
        services.edge_create(parent=here, child=foreign)
    assert caught.value.errors == {"child": "does not exist"}


def test_a_second_parent_is_refused_unless_the_site_allows_it(chain, site):
    a, b, c = chain
    with pytest.raises(services.TopologyInvalid) as caught:
        services.edge_create(parent=a, child=c)
    assert caught.value.nodes == sorted([a.pk, b.pk, c.pk])
    assert "already has parent" in caught.value.errors["child"]

    TopologySettings.objects.create(organization=site.organization, site=site, allow_multiple_parents=True)
    services.edge_create(parent=a, child=c)  # a diamond is still a DAG
    assert Edge.objects.filter(child=c).count() == 2


def test_a_duplicate_edge_is_refused(chain):
    a, b, _c = chain
    with pytest.raises(services.TopologyInvalid, match="already exists"):
        services.edge_create(parent=a, child=b)


@pytest.mark.parametrize(
    "values,field",
    [
        ({"resistance_ohm_per_phase": -0.1}, "resistance_ohm_per_phase"),
        ({"loss_factor": 1.5}, "loss_factor"),
        ({"cable_length_m": -3.0}, "cable_length_m"),
        ({"resistance_ohm_per_phase": float("nan")}, "resistance_ohm_per_phase"),
    ],
)
def test_bad_cable_values_are_refused(site, values, field):
    a, b = factories.NodeFactory(site=site), factories.NodeFactory(site=site)
    with pytest.raises(services.TopologyInvalid) as caught:
        services.edge_create(parent=a, child=b, values=values)
    assert field in caught.value.errors
    assert not Edge.objects.exists()


def test_a_meter_is_on_one_node_only(site, meter):
    first = services.node_create(site=site, values={"name": "Main", "kind": "meter_point", "meter": meter})
    with pytest.raises(services.TopologyInvalid) as caught:
        services.node_create(site=site, values={"name": "Again", "kind": "load", "meter": meter})
    assert caught.value.nodes == [first.pk]
    assert f"already on node {first.pk}" in caught.value.errors["meter"]
    assert Node.objects.count() == 1


def test_a_meter_of_another_site_is_refused(site):
    elsewhere = factories.MeterFactory(site=factories.SiteFactory(organization=site.organization))
    with pytest.raises(services.TopologyInvalid) as caught:
        services.node_create(site=site, values={"name": "Main", "kind": "load", "meter": elsewhere})
    assert "of site" in caught.value.errors["meter"]


def test_an_unknown_kind_is_refused(site):
    with pytest.raises(services.TopologyInvalid) as caught:
        services.node_create(site=site, values={"name": "Main", "kind": "windmill"})
    assert "kind" in caught.value.errors


def test_a_node_does_not_move_between_sites(site):
    node = factories.NodeFactory(site=site)
    other = factories.SiteFactory(organization=site.organization)
    with pytest.raises(services.TopologyInvalid) as caught:
        services.node_update(node=node, values={"site": other})
    assert "site" in caught.value.errors


def test_moving_an_edge_end_keeps_the_rules(chain):
    a, b, c = chain
    edge = Edge.objects.get(parent=b, child=c)
    with pytest.raises(services.TopologyInvalid, match="cycle"):
        services.edge_update(edge=edge, values={"child": a})
    edge.refresh_from_db()
    assert edge.child_id == c.pk
