"""The topology view in Debian's chromium (Playwright) against the real ASGI server: log in, open
/dashboard/sites/{id}/topology/, see the graph, ingest a reading over HTTP, see the live update,
switch to 2D and back. Screenshot: $ARTIFACTS/topology.png (default ./artifacts/topology.png)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from energy.topology import services
from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def ts(seconds: float = 0) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=30) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_ingest(live_url: str, meter, body: dict) -> httpx.Response:
    return httpx.post(
        f"{live_url}/api/energy/energy-data/",
        content=orjson.dumps(body),
        headers={"X-Device-Key": str(meter.device_key), "Content-Type": "application/json"},
        timeout=10,
    )


def test_the_topology_view_shows_the_graph_and_its_live_updates(live_url, chromium):
    from playwright.sync_api import expect

    membership = factories.MembershipFactory()
    site = factories.SiteFactory(organization=membership.organization, name="E2E Depot")
    grid_meter = factories.MeterFactory(site=site, name="Grid meter", kind="grid")
    pv_meter = factories.MeterFactory(site=site, name="PV meter", kind="pv")
    load_meter = factories.MeterFactory(site=site, name="Load meter", kind="load")
    grid = services.node_create(site=site, values={"name": "Grid", "kind": "grid_connection", "meter": grid_meter})
    board = services.node_create(site=site, values={"name": "Main switchboard", "kind": "switchboard"})
    pv = services.node_create(
        site=site, values={"name": "PV", "kind": "pv", "meter": pv_meter, "sign_convention": "generation_positive"}
    )
    load = services.node_create(site=site, values={"name": "Load", "kind": "load", "meter": load_meter})
    workshop = services.node_create(site=site, values={"name": "Workshop (unmetered)", "kind": "load"})
    services.edge_create(parent=grid, child=board, values={"loss_factor": 0.01})
    services.edge_create(parent=board, child=pv, values={"resistance_ohm_per_phase": 0.05})
    services.edge_create(parent=board, child=load, values={"resistance_ohm_per_phase": 0.05})
    services.edge_create(parent=board, child=workshop)
    phases = {"current_a": 20.0, "current_b": 20.0, "current_c": 20.0}
    for meter, power in ((grid_meter, 1000.0), (pv_meter, 3000.0), (load_meter, 3800.0)):
        assert http_ingest(live_url, meter, {"timestamp": ts(-5), "total_power": power, **phases}).status_code == 201
    artifacts = Path(os.environ.get("ARTIFACTS", "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)

    browser = chromium(webgl=True)  # WebGL in software; without it the view falls back to 2D
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{live_url}/dashboard/login/")
    page.fill("#id_username", membership.user.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.goto(f"{live_url}/dashboard/sites/{site.pk}/")
    page.click("#topology-link")
    page.wait_for_url(f"**/dashboard/sites/{site.pk}/topology/")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=10_000)
    grid_row = page.locator(f"tr[data-node='{grid.pk}']")
    expect(grid_row).to_have_attribute("data-power", "1000")
    expect(page.locator(f"tr[data-node='{pv.pk}']")).to_have_attribute("data-power", "-3000")
    expect(page.locator("#total-generation")).to_have_text("3.00 kW")
    expect(page.locator("#graph canvas").first).to_be_visible()
    mode = page.locator("#topology").get_attribute("data-mode")

    response = http_ingest(live_url, grid_meter, {"timestamp": ts(), "total_power": 3600.0, **phases})
    assert response.status_code == 201
    expect(grid_row).to_have_attribute("data-power", "3600", timeout=10_000)
    assert int(page.locator("#topology").get_attribute("data-updates")) >= 1
    expect(page.locator("#total-import")).to_have_text("3.60 kW")
    expect(page.locator(f"tr[data-node='{workshop.pk}']")).to_have_class("stale")  # no meter: grey

    page.click("#mode-toggle")
    # From 3D to the 2D fallback (without WebGL the view was 2D already and stays so).
    expect(page.locator("#topology")).to_have_attribute("data-mode", "2d")
    page.screenshot(path=str(artifacts / "topology-2d.png"))
    if mode == "3d":
        page.click("#mode-toggle")
        expect(page.locator("#topology")).to_have_attribute("data-mode", "3d")
    page.wait_for_timeout(1500)  # let the layout settle and particles run before the picture
    page.screenshot(path=str(artifacts / "topology.png"))
    print(f"topology view rendered in {mode}")
    assert (artifacts / "topology.png").stat().st_size > 10_000
