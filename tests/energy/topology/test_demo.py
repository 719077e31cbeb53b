"""make run's demo depot has its energy graph, and the simulator's readings move it."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from energy.demo import demo_ensure
from energy.ingest.store import reading_batch_ingest
from energy.models import Meter, Site
from energy.simulator import DepotSimulator
from energy.topology.models import Edge, Node
from energy.topology.selectors import topology_graph

pytestmark = pytest.mark.django_db


def test_the_demo_depot_has_its_graph_once(tmp_path):
    data = demo_ensure(state_path=tmp_path / "demo.json")
    assert data["topology"] == {"nodes": 11, "edges": 10}
    site = Site.objects.get(pk=data["site"]["id"])
    assert Node.objects.get(site=site, kind="grid_connection").meter.kind == Meter.Kind.GRID
    unmetered = Node.objects.filter(site=site, kind="ev_charger", meter__isnull=True)
    assert [node.name for node in unmetered] == ["EV charger 2 (unmetered)"]
    assert Node.objects.filter(site=site, meter__isnull=False).count() == 5  # every demo meter is on the graph
    demo_ensure(state_path=tmp_path / "demo.json")
    assert Node.objects.filter(site=site).count() == 11 and Edge.objects.filter(site=site).count() == 10


def test_the_simulators_readings_give_power_and_cable_losses(tmp_path):
    data = demo_ensure(state_path=tmp_path / "demo.json")
    site = Site.objects.get(pk=data["site"]["id"])
    simulator = DepotSimulator(timezone="Europe/Berlin", latitude=52.52, longitude=13.405, seed=7)
    now = timezone.now().replace(microsecond=0)
    simulator.step(now - timedelta(seconds=10))
    readings = simulator.step(now)
    for meter in Meter.objects.filter(site=site):
        reading_batch_ingest(device=meter, items=[readings[meter.kind]], source="test")

    graph = topology_graph(organization_id=site.organization_id, site_id=site.pk)
    nodes = {node["name"]: node for node in graph["nodes"]}
    assert nodes["Grid connection"]["power_w"] == readings["grid"]["total_power"]
    assert nodes["Rooftop PV"]["power_w"] == -readings["pv"]["total_power"]
    # The simulator's grid is the exact balance of its meters: nothing is lost or unaccounted at
    # the grid connection, but the unmetered EV charger keeps it from being called a loss.
    assert nodes["Grid connection"]["losses_w"] is None
    assert nodes["Grid connection"]["unmetered_w"] == pytest.approx(0.0, abs=0.5)
    assert graph["totals"]["edge_losses_w"] > 0  # I²R on the metered cables
    assert graph["totals"]["stale_nodes"] == 0


def test_demo_setup_prints_where_the_topology_is(tmp_path):
    out = StringIO()
    call_command("demo_setup", "--state", str(tmp_path / "demo.json"), stdout=out)
    site_id = Site.objects.get(name="Demo Depot").pk
    assert f"http://127.0.0.1:8000/dashboard/sites/{site_id}/topology/" in out.getvalue()
    assert f"/api/energy/topology/nodes/graph?site={site_id}" in out.getvalue()
