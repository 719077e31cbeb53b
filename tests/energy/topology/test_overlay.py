"""The live topology over /ws/live/: the graph on subscribing, updates as readings arrive
(throttled), the whole graph again when its structure changes; another tenant's site is unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from energy.ingest import store
from energy.live import consumers
from energy.topology import services
from joulepoint.asgi import application
from tests import factories
from tests.conftest import _token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def ts(seconds: int = 0) -> str:
    return (datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30 - seconds)).isoformat()


async def recv(ws, timeout: float = 5) -> dict:
    return orjson.loads(await ws.receive_from(timeout=timeout))


async def send(ws, data) -> None:
    await ws.send_to(text_data=orjson.dumps(data).decode())


@database_sync_to_async
def depot():
    """grid (metered) → load (metered), and a second tenant's site."""
    org = factories.OrganizationFactory()
    site = factories.SiteFactory(organization=org)
    grid_meter, load_meter = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    grid = services.node_create(site=site, values={"name": "Grid", "kind": "grid_connection", "meter": grid_meter})
    load = services.node_create(site=site, values={"name": "Load", "kind": "load", "meter": load_meter})
    services.edge_create(parent=grid, child=load)
    foreign = factories.SiteFactory(organization=factories.OrganizationFactory())
    return org, site, grid_meter, load_meter, foreign


@database_sync_to_async
def ingest(meter, power: float, seconds: int = 0):
    store.reading_batch_ingest(device=meter, items=[{"timestamp": ts(seconds), "total_power": power}], source="test")


async def watching(org, site):
    token = await database_sync_to_async(_token)(org, ["energy:read"])
    ws = WebsocketCommunicator(application, f"/ws/live/?token={token}")
    assert (await ws.connect(timeout=10))[0]
    assert (await recv(ws))["type"] == "ready"
    await send(ws, {"type": "subscribe", "topology": [site.pk]})
    assert await recv(ws) == {"type": "subscribed", "sites": [], "meters": [], "topology": [site.pk]}
    return ws


async def test_the_graph_then_updates_as_readings_arrive():
    org, site, grid_meter, load_meter, _foreign = await depot()
    await ingest(grid_meter, 1000.0)
    ws = await watching(org, site)
    first = await recv(ws)
    assert first["type"] == "topology" and first["site_id"] == site.pk
    assert {node["name"]: node["power_w"] for node in first["graph"]["nodes"]} == {"Grid": 1000.0, "Load": None}

    await ingest(load_meter, 900.0)
    update = await recv(ws)
    assert update["type"] == "topology.update"
    nodes = {node["id"]: node for node in update["nodes"]}
    grid_node = next(node for node in first["graph"]["nodes"] if node["name"] == "Grid")
    assert nodes[grid_node["id"]]["losses_w"] == 100.0
    assert update["totals"]["consumption_w"] == 900.0
    await ws.disconnect()


async def test_updates_are_throttled_per_site(monkeypatch):
    # A long interval, so the five readings below all fall inside one: the first push goes out at
    # once, the rest wait for the interval's end and leave as one update with the last reading.
    monkeypatch.setattr(consumers, "TOPOLOGY_PUSH_INTERVAL_SECONDS", 3.0)
    org, site, grid_meter, _load_meter, _foreign = await depot()
    ws = await watching(org, site)
    graph = await recv(ws)
    grid_id = next(node["id"] for node in graph["graph"]["nodes"] if node["name"] == "Grid")
    for second in range(5):
        await ingest(grid_meter, 1000.0 + second, seconds=second)
    powers = []
    while not powers or powers[-1] != 1004.0:
        update = await recv(ws, timeout=8)
        assert update["type"] == "topology.update"
        powers.append(next(node["power_w"] for node in update["nodes"] if node["id"] == grid_id))
    assert len(powers) <= 2, powers
    await ws.disconnect()


async def test_a_structure_change_sends_the_whole_graph_again():
    org, site, _grid_meter, _load_meter, _foreign = await depot()
    ws = await watching(org, site)
    await recv(ws)
    await database_sync_to_async(services.node_create)(site=site, values={"name": "Workshop", "kind": "load"})
    frame = await recv(ws)
    assert frame["type"] == "topology"
    assert "Workshop" in [node["name"] for node in frame["graph"]["nodes"]]
    await ws.disconnect()


async def test_another_tenants_site_is_not_found():
    org, _site, _grid_meter, _load_meter, foreign = await depot()
    token = await database_sync_to_async(_token)(org, ["energy:read"])
    ws = WebsocketCommunicator(application, f"/ws/live/?token={token}")
    await ws.connect(timeout=10)
    await recv(ws)
    await send(ws, {"type": "subscribe", "topology": [foreign.pk]})
    assert await recv(ws) == {"type": "error", "code": "not_found", "detail": "Unknown ids.", "topology": [foreign.pk]}
    await send(ws, {"type": "subscribe", "topology": "all"})
    assert (await recv(ws))["code"] == "bad_subscription"
    await ws.disconnect()


async def test_a_reading_turns_stale_on_the_overlay_without_another_reading():
    org, site, grid_meter, _load_meter, _foreign = await depot()
    await database_sync_to_async(services.topology_settings_set)(site=site, values={"stale_after_seconds": 4})
    ws = await watching(org, site)
    graph = await recv(ws)
    grid_id = next(node["id"] for node in graph["graph"]["nodes"] if node["name"] == "Grid")
    await database_sync_to_async(store.reading_batch_ingest)(
        device=grid_meter, items=[{"timestamp": datetime.now(UTC).isoformat(), "total_power": 1000.0}], source="test"
    )
    fresh = await recv(ws)
    grid = next(node for node in fresh["nodes"] if node["id"] == grid_id)
    assert grid["stale"] is False and grid["power_w"] == 1000.0
    # No reading arrives; the socket re-evaluates when the reading's age passes 4 s.
    update = await recv(ws, timeout=10)
    assert update["type"] == "topology.update"
    grid = next(node for node in update["nodes"] if node["id"] == grid_id)
    assert grid["stale"] is True and grid["power_w"] is None and grid["reading"]["age_seconds"] > 4
    assert update["totals"]["stale_nodes"] == 1
    # Nothing is left to turn stale: no further frame.
    assert await ws.receive_nothing(timeout=1.5)
    await ws.disconnect()


async def test_sockets_watching_one_site_share_one_update_per_interval():
    # One claim per site and interval (in Redis when the cache is: tests/platform/test_cache.py
    # claims it from two clients): the claimer computes, every watcher receives that update.
    org, site, grid_meter, _load_meter, _foreign = await depot()
    first, second = await watching(org, site), await watching(org, site)
    await recv(first)
    await recv(second)
    await ingest(grid_meter, 1234.0)
    one, other = await recv(first), await recv(second)
    assert one["type"] == "topology.update" and 1234.0 in [node["power_w"] for node in one["nodes"]]
    assert one == other  # the same computation, computed_at included
    for ws in (first, second):
        assert await ws.receive_nothing(timeout=0.6), await ws.receive_from()
    await first.disconnect()
    await second.disconnect()
