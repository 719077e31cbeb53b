"""The topology API as an integrator meets it: CRUD with 400s naming the nodes, and the graph
with live power, losses, stale meters and replay, hand-computed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from energy.topology.models import Edge, Node, TopologySettings
from tests import factories

pytestmark = pytest.mark.django_db

NODES = "/api/energy/topology/nodes/"
EDGES = "/api/energy/topology/edges/"
GRAPH = "/api/energy/topology/nodes/graph"


def test_nodes_and_edges_are_created_and_listed(api, site, meter):
    grid = api.post(
        NODES, {"site": site.pk, "name": "Grid", "kind": "grid_connection", "meter": meter.pk}, format="json"
    )
    assert grid.status_code == 201, grid.content
    board = api.post(
        NODES, {"site": site.pk, "name": "Board", "kind": "switchboard", "x": 1.0, "y": 2.0, "z": 0.5}, format="json"
    )
    edge = api.post(
        EDGES,
        {"parent": grid.json()["id"], "child": board.json()["id"], "resistance_ohm_per_phase": 0.01},
        format="json",
    )
    assert edge.status_code == 201, edge.content
    assert edge.json()["site"] == site.pk
    listed = api.get(NODES, {"site": site.pk}).json()
    assert [row["name"] for row in listed["results"]] == ["Grid", "Board"]
    assert api.get(EDGES, {"parent": grid.json()["id"]}).json()["count"] == 1


def test_a_cycle_is_a_400_naming_the_nodes(api, site):
    a, b = factories.NodeFactory(site=site), factories.NodeFactory(site=site)
    assert api.post(EDGES, {"parent": a.pk, "child": b.pk}, format="json").status_code == 201
    response = api.post(EDGES, {"parent": b.pk, "child": a.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["nodes"] == sorted([a.pk, b.pk])
    assert "cycle" in response.json()["child"][0]
    assert Edge.objects.count() == 1


def test_a_self_loop_and_a_negative_resistance_are_400s(api, site):
    a, b = factories.NodeFactory(site=site), factories.NodeFactory(site=site)
    loop = api.post(EDGES, {"parent": a.pk, "child": a.pk}, format="json")
    assert loop.status_code == 400 and loop.json()["nodes"] == [a.pk]
    negative = api.post(EDGES, {"parent": a.pk, "child": b.pk, "resistance_ohm_per_phase": -1}, format="json")
    assert negative.status_code == 400 and "resistance_ohm_per_phase" in negative.json()
    assert not Edge.objects.exists()


def test_a_meter_on_two_nodes_and_an_unknown_kind_are_400s(api, site, meter):
    first = api.post(NODES, {"site": site.pk, "name": "A", "kind": "load", "meter": meter.pk}, format="json").json()
    again = api.post(NODES, {"site": site.pk, "name": "B", "kind": "load", "meter": meter.pk}, format="json")
    assert again.status_code == 400 and again.json()["nodes"] == [first["id"]]
    unknown = api.post(NODES, {"site": site.pk, "name": "C", "kind": "windmill"}, format="json")
    assert unknown.status_code == 400 and "kind" in unknown.json()
    assert Node.objects.count() == 1


def test_another_tenants_node_reads_as_missing(api, site, other_org):
    mine = factories.NodeFactory(site=site)
    foreign = factories.NodeFactory(site=factories.SiteFactory(organization=other_org))
    response = api.post(EDGES, {"parent": mine.pk, "child": foreign.pk}, format="json")
    assert response.status_code == 400 and "child" in response.json()
    assert api.get(f"{NODES}{foreign.pk}/").status_code == 404


# The graph ----------------------------------------------------------------------------------------


@pytest.fixture
def depot(site):
    """grid (10 kW) → board (no meter) → {feeder (6 kW, 10 A a phase) → load (5.8 kW), PV (3 kW,
    generation positive), workshop (no meter)}; board → feeder has 0.1 Ω a phase, board → PV a
    1 % loss factor. Readings a minute old; a minute earlier, other figures (for replay)."""
    now = timezone.now()
    fresh, earlier = now - timedelta(seconds=60), now - timedelta(seconds=120)
    meters = {name: factories.MeterFactory(site=site, name=name) for name in ("grid", "feeder", "load", "pv")}
    for name, (power_now, power_before) in {
        "grid": (10000.0, 9000.0),
        "feeder": (6000.0, 5500.0),
        "load": (5800.0, 5000.0),
        "pv": (3000.0, None),
    }.items():
        rows = [{"ts": fresh, "total_power": power_now, "current_a": 10.0, "current_b": 10.0, "current_c": 10.0}]
        if power_before is not None:
            rows.append({"ts": earlier, "total_power": power_before})
        factories.readings_create(meters[name], rows, rollup=False)

    def node(name, kind, meter=None, **extra):
        return factories.NodeFactory(site=site, name=name, kind=kind, meter=meters.get(meter), **extra)

    nodes = {
        "grid": node("Grid", "grid_connection", "grid"),
        "board": node("Board", "switchboard"),
        "feeder": node("Feeder", "feeder", "feeder"),
        "load": node("Load", "load", "load"),
        "pv": node("PV", "pv", "pv", sign_convention="generation_positive"),
        "workshop": node("Workshop", "load"),
    }
    factories.EdgeFactory(parent=nodes["grid"], child=nodes["board"])
    factories.EdgeFactory(parent=nodes["board"], child=nodes["feeder"], resistance_ohm_per_phase=0.1)
    factories.EdgeFactory(parent=nodes["feeder"], child=nodes["load"])
    factories.EdgeFactory(parent=nodes["board"], child=nodes["pv"], loss_factor=0.01)
    factories.EdgeFactory(parent=nodes["board"], child=nodes["workshop"])
    return {"nodes": nodes, "meters": meters, "now": now, "earlier": earlier}


def _graph(api, site, **params):
    response = api.get(GRAPH, {"site": site.pk, **params})
    assert response.status_code == 200, response.content
    body = response.json()
    return body, {row["name"]: row for row in body["nodes"]}


def test_the_graph_has_live_power_losses_and_the_unmetered_remainder(api, site, depot):
    body, nodes = _graph(api, site)
    assert nodes["Grid"]["power_w"] == 10000.0
    assert nodes["PV"]["power_w"] == -3000.0  # generation positive, so flowing up the graph
    assert nodes["Feeder"]["losses_w"] == 200.0  # 6000 in, 5800 measured below
    # The board has an unmetered child (the workshop): 10000 - (6000 - 3000) is unmetered, not loss.
    assert nodes["Grid"]["losses_w"] is None and nodes["Grid"]["unmetered_w"] == 7000.0
    assert nodes["Board"]["power_w"] is None and nodes["Workshop"]["power_w"] is None
    assert nodes["Load"]["reading"]["current_a"] == 10.0 and nodes["Load"]["stale"] is False
    edges = {(row["parent"], row["child"]): row for row in body["edges"]}
    feeder_edge = edges[(depot["nodes"]["board"].pk, depot["nodes"]["feeder"].pk)]
    assert feeder_edge["losses_w"] == 30.0 and feeder_edge["loss_method"] == "i2r"  # 0.1 Ω x 3 x 10²
    assert edges[(depot["nodes"]["board"].pk, depot["nodes"]["pv"].pk)]["losses_w"] == 30.0  # 1 % of 3 kW
    assert body["totals"] == {
        "import_w": 10000.0,
        "export_w": 0.0,
        "generation_w": 3000.0,
        "consumption_w": 5800.0,
        "losses_w": 200.0,
        "unmetered_w": 7000.0,
        "edge_losses_w": 60.0,
        "stale_nodes": 0,
    }


def test_a_stale_meter_is_shown_but_not_taken_as_a_measurement(api, site, depot):
    ev_meter = factories.MeterFactory(site=site, name="ev")
    factories.readings_create(ev_meter, [{"ts": depot["now"] - timedelta(minutes=10), "total_power": 1000.0}])
    ev = factories.NodeFactory(site=site, name="EV", kind="ev_charger", meter=ev_meter)
    factories.EdgeFactory(parent=depot["nodes"]["feeder"], child=ev)
    body, nodes = _graph(api, site)
    assert nodes["EV"]["stale"] is True and nodes["EV"]["power_w"] is None
    assert nodes["EV"]["reading"]["total_power"] == 1000.0 and nodes["EV"]["reading"]["age_seconds"] > 300
    # The feeder's children are no longer all measured: its 200 W is unmetered, not loss.
    assert nodes["Feeder"]["losses_w"] is None and nodes["Feeder"]["unmetered_w"] == 200.0
    assert body["totals"]["stale_nodes"] == 1 and body["totals"]["losses_w"] == 0.0


def test_replay_reads_the_latest_readings_at_or_before_at(api, site, depot):
    at = (depot["earlier"] + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    body, nodes = _graph(api, site, at=at)
    assert body["at"] is not None
    assert nodes["Grid"]["power_w"] == 9000.0 and nodes["Load"]["power_w"] == 5000.0
    assert nodes["Feeder"]["losses_w"] == 500.0
    assert nodes["PV"]["reading"] is None  # its first reading came later
    assert nodes["Load"]["reading"]["age_seconds"] == 30.0


def test_the_graph_reads_in_the_same_queries_whatever_the_size(api, site, depot, django_assert_max_num_queries):
    # Token lookup and the graph; more metered nodes must not add queries.
    with django_assert_max_num_queries(12) as small:
        api.get(GRAPH, {"site": site.pk})
    for index in range(20):
        meter = factories.MeterFactory(site=site)
        factories.readings_create(meter, [{"ts": depot["now"], "total_power": float(index)}], rollup=False)
        factories.EdgeFactory(parent=depot["nodes"]["board"], child=factories.NodeFactory(site=site, meter=meter))
    with django_assert_max_num_queries(len(small.captured_queries)):
        api.get(GRAPH, {"site": site.pk})


def test_a_site_without_nodes_is_an_empty_graph(api, site):
    body, nodes = _graph(api, site)
    assert body["nodes"] == [] and body["edges"] == [] and nodes == {}
    assert body["totals"]["import_w"] == 0.0


def test_a_foreign_site_is_a_404_and_bad_parameters_are_400s(api, site, other_org):
    foreign = factories.SiteFactory(organization=other_org)
    assert api.get(GRAPH, {"site": foreign.pk}).status_code == 404
    assert api.get(GRAPH, {"site": 99999999}).status_code == 404
    assert "site" in api.get(GRAPH).json()
    assert "site" in api.get(GRAPH, {"site": "x"}).json()
    assert "at" in api.get(GRAPH, {"site": site.pk, "at": "yesterday"}).json()
    assert "at" in api.get(GRAPH, {"site": site.pk, "at": "2025-10-16T10:00:00"}).json()


SETTINGS = "/api/energy/topology/settings/"


def test_a_sites_settings_read_as_the_defaults_until_written(api, site):
    listed = api.get(SETTINGS).json()["results"]
    assert listed == [
        {"site_id": site.pk, "allow_multiple_parents": False, "stale_after_seconds": 300, "is_default": True}
    ]
    changed = api.patch(f"{SETTINGS}{site.pk}", {"stale_after_seconds": 60}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json() == {
        "site_id": site.pk, "allow_multiple_parents": False, "stale_after_seconds": 60, "is_default": False,
    }  # fmt: skip
    assert TopologySettings.objects.get(site=site).stale_after_seconds == 60
    # PUT replaces both: the omitted stale_after_seconds goes back to its default.
    replaced = api.put(f"{SETTINGS}{site.pk}/", {"allow_multiple_parents": True}, format="json")
    assert replaced.json()["allow_multiple_parents"] is True and replaced.json()["stale_after_seconds"] == 300
    assert api.get(f"{SETTINGS}{site.pk}").json() == replaced.json()


def test_the_graph_and_the_edge_rules_follow_the_settings_written_over_the_api(api, site, depot):
    assert api.patch(f"{SETTINGS}{site.pk}", {"stale_after_seconds": 1}, format="json").status_code == 200
    graph = api.get(GRAPH, {"site": site.pk}).json()
    assert graph["stale_after_seconds"] == 1
    assert graph["totals"]["stale_nodes"] == sum(1 for node in graph["nodes"] if node["reading"] is not None)
    a, b, c = (factories.NodeFactory(site=site) for _ in range(3))
    assert api.post(EDGES, {"parent": a.pk, "child": c.pk}, format="json").status_code == 201
    assert api.post(EDGES, {"parent": b.pk, "child": c.pk}, format="json").status_code == 400
    api.patch(f"{SETTINGS}{site.pk}", {"allow_multiple_parents": True}, format="json")
    assert api.post(EDGES, {"parent": b.pk, "child": c.pk}, format="json").status_code == 201


def test_forbidding_several_parents_while_nodes_have_them_is_a_400_naming_them(api, site):
    TopologySettings.objects.create(organization=site.organization, site=site, allow_multiple_parents=True)
    a, b, c, d = (factories.NodeFactory(site=site) for _ in range(4))
    for parent, child in ((a, c), (b, c), (a, d), (b, d), (a, b)):
        factories.EdgeFactory(parent=parent, child=child)
    response = api.patch(f"{SETTINGS}{site.pk}", {"allow_multiple_parents": False}, format="json")
    assert response.status_code == 400
    assert response.json()["nodes"] == [c.pk, d.pk]
    message = response.json()["allow_multiple_parents"][0]
    assert f"node {c.pk} ({c.name}) has parents {a.pk}, {b.pk}" in message
    assert f"node {d.pk} ({d.name})" in message and f"node {b.pk} (" not in message
    assert TopologySettings.objects.get(site=site).allow_multiple_parents is True
    # With the extra edges gone it is accepted.
    Edge.objects.filter(parent=b, child__in=[c, d]).delete()
    assert api.patch(f"{SETTINGS}{site.pk}", {"allow_multiple_parents": False}, format="json").status_code == 200


@pytest.mark.parametrize(
    "body,field",
    [
        ({"stale_after_seconds": 0}, "stale_after_seconds"),
        ({"stale_after_seconds": -5}, "stale_after_seconds"),
        ({"stale_after_seconds": 10**12}, "stale_after_seconds"),
        ({"stale_after_seconds": "soon"}, "stale_after_seconds"),
        ({"allow_multiple_parents": "perhaps"}, "allow_multiple_parents"),
    ],
)
def test_bad_settings_are_400s_naming_the_field_and_change_nothing(api, site, body, field):
    response = api.patch(f"{SETTINGS}{site.pk}", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not TopologySettings.objects.exists()


def test_another_tenants_site_settings_are_404(api, other_org):
    foreign = factories.SiteFactory(organization=other_org)
    assert api.get(f"{SETTINGS}{foreign.pk}").status_code == 404
    assert api.patch(f"{SETTINGS}{foreign.pk}", {"stale_after_seconds": 5}, format="json").status_code == 404
    assert not TopologySettings.objects.exists()
    assert api.get(SETTINGS, {"site": foreign.pk}).json()["results"] == []
