"""The graph's structure kept per process: read once, read again after any change to the site's
nodes, edges, settings, name or a node's meter, whoever made it; never served stale."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from energy.models import Node
from energy.topology import selectors, services
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def structure_cache(settings):
    # On where the cache is shared (Redis); this test process is the only one, so the
    # local-memory cache of the SQLite runs serves as well.
    settings.TOPOLOGY_STRUCTURE_CACHE = True


GRAPH = "/api/energy/topology/nodes/graph"


def _graph(api, site) -> tuple[dict, int]:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(GRAPH, {"site": site.pk})
    assert response.status_code == 200, response.content
    return response.json(), len(queries.captured_queries)


@pytest.fixture
def grid(site):
    meter = factories.MeterFactory(site=site)
    factories.readings_create(meter, [{"ts": timezone.now(), "total_power": 500.0}], rollup=False)
    return factories.NodeFactory(site=site, name="Grid", kind="grid_connection", meter=meter)


def test_the_structure_is_read_once_until_the_site_changes(api, site, grid):
    first, cold = _graph(api, site)
    again, warm = _graph(api, site)
    assert warm < cold  # the nodes, edges and settings were not read again
    assert [(node["name"], node["power_w"]) for node in again["nodes"]] == [("Grid", 500.0)]
    assert again["nodes"][0]["reading"]["age_seconds"] >= first["nodes"][0]["reading"]["age_seconds"]

    factories.NodeFactory(site=site, name="Board", kind="switchboard")  # not through the services
    changed, reread = _graph(api, site)
    assert reread == cold
    assert [node["name"] for node in changed["nodes"]] == ["Grid", "Board"]


def test_every_kind_of_change_shows_in_the_next_graph(api, site, grid):
    _graph(api, site)
    board = services.node_create(site=site, values={"name": "Board", "kind": "switchboard"})
    services.edge_create(parent=grid, child=board, values={"loss_factor": 0.02})
    body, _ = _graph(api, site)
    assert [(edge["parent"], edge["child"]) for edge in body["edges"]] == [(grid.pk, board.pk)]

    services.topology_settings_set(site=site, values={"stale_after_seconds": 42})
    assert _graph(api, site)[0]["stale_after_seconds"] == 42

    site.name = "Renamed depot"
    site.save()
    assert _graph(api, site)[0]["site"]["name"] == "Renamed depot"

    grid.meter.delete()  # the node keeps its place, without a meter
    body, _ = _graph(api, site)
    assert body["nodes"][0]["meter_id"] is None and body["nodes"][0]["power_w"] is None

    services.node_delete(node=board)
    assert [node["name"] for node in _graph(api, site)[0]["nodes"]] == ["Grid"]


def test_another_tenant_does_not_get_a_cached_structure(api, site, grid, other_org):
    _graph(api, site)
    foreign = factories.SiteFactory(organization=other_org)
    factories.NodeFactory(site=foreign, name="Theirs")
    assert api.get(GRAPH, {"site": foreign.pk}).status_code == 404
    assert selectors.topology_graph(organization_id=other_org.pk, site_id=site.pk) is None


def test_without_a_shared_cache_the_structure_is_read_every_time(api, site, grid, settings):
    settings.TOPOLOGY_STRUCTURE_CACHE = False
    assert _graph(api, site)[1] == _graph(api, site)[1]


def test_the_graph_answers_when_the_cache_cannot_be_read(api, site, grid, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(selectors.cache, "get", down)
    body, _ = _graph(api, site)
    assert [node["power_w"] for node in body["nodes"]] == [500.0]


def test_structure_writes_are_saved_while_redis_is_down(site, grid, dead_redis, caplog):
    # The version token cannot be replaced then; other processes' copies expire with it.
    node = factories.NodeFactory(site=site, name="Feeder", kind="feeder")
    services.node_update(node=node, values={"name": "Feeder A"})
    site.name = "Renamed while Redis was down"
    site.save()
    grid.meter.delete()
    assert Node.objects.get(pk=node.pk).name == "Feeder A"
    assert "topology structure changes told no other process" in caplog.text
