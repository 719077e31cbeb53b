"""The dashboard's load management panel in Debian's chromium, on the real ASGI server: a grid
reading is ingested over HTTP, the site is reallocated (debounced, after the ingest; in the
server process on the embedded default, in a real Celery worker with a broker) and the panel
shows site import against the limit and the charger's new setpoint; a second reading lowers it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from django.conf import settings
from django.utils import timezone

from tests import factories

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"


def _ingest(live_url: str, meter, power_w: float) -> None:
    body = {"timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "total_power": power_w}
    response = httpx.post(
        f"{live_url}/api/energy/energy-data/",
        content=orjson.dumps(body),
        headers={"X-Device-Key": str(meter.device_key), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201, response.content


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_load_panel_follows_the_allocation(live_url, request, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    if settings.CELERY_BROKER_URL:
        request.getfixturevalue("celery_worker")  # the allocation task runs there
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    membership = factories.MembershipFactory()
    site = factories.SiteFactory(organization=membership.organization, name="Load Depot")
    constraint = factories.SiteConstraintFactory(site=site, max_import_kw=50.0)
    charger = factories.ChargerFactory(site=site, charging_station_id="E2E-CS-1")
    factories.ChargingSessionFactory(charger=charger)
    # Later today, so it lowers nothing now but is listed among the windows ahead.
    factories.DemandResponseEventFactory(
        site=site,
        program="Grid operator call",
        starts_at=timezone.now() + timedelta(hours=2),
        ends_at=timezone.now() + timedelta(hours=3),
        limit_kw=20.0,
    )

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context(locale="en-US").new_page()
            page.goto(f"{live_url}/dashboard/")
            page.fill("#id_username", membership.user.username)
            page.fill("#id_password", "pw-for-tests")
            page.click("button[type=submit]")
            page.wait_for_url(f"**/dashboard/sites/{site.pk}")
            expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=10_000)
            expect(page.locator("#load-panel")).to_be_hidden()

            # 10 kW on the grid, limit 50 kW: the charger gets its maximum, 32 A (22.1 kW).
            _ingest(live_url, constraint.grid_meter, 10_000.0)
            row = page.locator(f"#load-chargers tr[data-charger='{charger.pk}']")
            expect(row).to_contain_text("E2E-CS-1", timeout=15_000)
            expect(row).to_contain_text("32 A")
            expect(page.locator("#load-import")).to_have_text("10 kW")
            expect(page.locator("#load-limit")).to_have_text("50 kW")
            expect(page.locator("#load-windows")).to_contain_text("Demand response “Grid operator call”")
            expect(page.locator("#load-windows")).to_contain_text("20 kW")

            # 45 kW on the grid: 5 kW left, 7.2 A.
            time.sleep(2.5)  # past the per-site debounce
            _ingest(live_url, constraint.grid_meter, 45_000.0)
            expect(row).to_contain_text("7.2 A", timeout=15_000)
            expect(page.locator("#load-import")).to_have_text("45 kW")
        finally:
            browser.close()
