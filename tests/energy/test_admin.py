"""The energy admin as a facility manager sees it: our name on it, a landing page with each
site's status, readings and events in the site's zone, newest first, filtered by meter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from automations.models import Alert
from energy.models import Reading
from energy.power_quality.models import PQEvent
from joulepoint.tenancy.services import api_credential_create
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def depot(org):
    site = factories.SiteFactory(organization=org, name="Berlin Depot", timezone="Europe/Berlin")
    main = factories.MeterFactory(site=site, name="Main meter", serial="B-1")
    charger = factories.MeterFactory(site=site, name="Charger", serial="B-2")
    return site, main, charger


def rows_of(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", " ", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


def test_the_admin_carries_our_name_and_view_site_opens_the_dashboard(manager):
    page = manager.get("/admin/").content.decode()
    assert "<title>Sites and settings | Joulepoint Edge</title>" in page
    assert 'id="site-name"><a href="/admin/">Joulepoint Edge</a>' in page
    assert 'href="/dashboard/">View site</a>' in page
    assert "Django administration" not in page


def test_the_landing_page_shows_each_site_meters_reporting_last_reading_and_open_alerts(manager, depot, other_org):
    site, main, charger = depot
    factories.SiteFactory(organization=other_org, name="Outsider Plant")
    last = timezone.now().replace(microsecond=0) - timedelta(minutes=2)
    Reading.objects.create(meter=main, ts=last, total_power=1.0, received_at=last)
    Reading.objects.create(meter=charger, ts=last - timedelta(hours=3), total_power=1.0, received_at=last)
    Alert.objects.create(organization=site.organization, site=site, severity="critical", message="trip", event_id="1")
    Alert.objects.create(
        organization=site.organization, site=site, message="old", event_id="2", status=Alert.Status.CLEARED
    )

    page = manager.get("/admin/").content.decode()

    [row] = [r for r in rows_of(page) if "Berlin Depot" in r]
    local = last.astimezone(ZoneInfo("Europe/Berlin"))
    assert "1 / 2" in row  # the charger has not reported for three hours
    assert local.strftime("%Y-%m-%d %H:%M:%S %Z") in row
    assert re.search(r"\b1\b\s*Dashboard", row)  # one open alert: the cleared one is not counted
    assert re.search(rf'href="/dashboard/sites/{site.pk}/?">Dashboard', page)
    assert "Outsider Plant" not in page


def test_readings_are_newest_first_in_the_site_zone_and_filter_by_meter(manager, depot, org):
    _site, main, charger = depot
    lisbon = factories.MeterFactory(site=factories.SiteFactory(organization=org, timezone="Europe/Lisbon"))
    for hour, meter in ((10, main), (12, main), (11, charger), (9, lisbon)):
        moment = datetime(2025, 10, 16, hour, tzinfo=UTC)
        Reading.objects.create(meter=meter, ts=moment, total_power=hour * 100.0, received_at=moment)

    page = manager.get("/admin/energy/reading/").content.decode()
    times = re.findall(r"2025-10-16 \d\d:00:00 CEST", page)
    assert times == ["2025-10-16 14:00:00 CEST", "2025-10-16 13:00:00 CEST", "2025-10-16 12:00:00 CEST"]
    assert "2025-10-16 10:00:00 WEST" in page  # Lisbon's reading in Lisbon's zone
    assert 'class="toplinks"' in page  # the date drill-down (date_hierarchy)
    assert re.search(r"By meter\s", page) and re.search(r"By site\s", page)

    only_main = manager.get(f"/admin/energy/reading/?meter__id__exact={main.pk}").content.decode()
    assert re.findall(r"2025-10-16 \d\d:00:00 CEST", only_main) == [
        "2025-10-16 14:00:00 CEST",
        "2025-10-16 12:00:00 CEST",
    ]


def test_power_quality_events_show_the_site_zone(manager, depot):
    site, main, _ = depot
    start = datetime(2025, 1, 10, 7, 30, tzinfo=UTC)
    PQEvent.objects.create(
        organization=site.organization,
        meter=main,
        kind="sag",
        start=start,
        last_violation_at=start,
        worst_value=0.8,
        threshold=0.9,
        unit="pu",
    )
    page = manager.get("/admin/energy/pqevent/").content.decode()
    assert "2025-01-10 08:30:00 CET" in page


def test_the_api_access_list_fits_a_laptop(manager, org, owner):
    credential = api_credential_create(
        organization=org, name="Billing export", scopes=["energy:read", "energy:write", "automations:read"], user=owner
    )
    page = manager.get("/admin/integrations/apiaccess/").content.decode()
    [row] = [r for r in rows_of(page) if "Billing export" in r]
    # Scopes grouped by app and the 40-character client id shortened: the row fits 1,366 px.
    assert "energy: read, write; automations: read" in row
    assert credential.application.client_id[:10] + "…" in row
    assert credential.application.client_id not in row
