"""The /dashboard/ pages: login, site picker, snapshot JSON, tenant isolation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from energy.ingest import store
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def test_anonymous_is_sent_to_login(client, site):
    for path in ("/dashboard/", f"/dashboard/sites/{site.pk}/", f"/dashboard/sites/{site.pk}/snapshot.json"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/dashboard/login?next=")


def test_login_page_logs_in(client, owner, site):
    assert client.get("/dashboard/login/").status_code == 200
    response = client.post("/dashboard/login/", {"username": owner.username, "password": "pw-for-tests"})
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 302  # one site: straight to it
    bad = Client().post("/dashboard/login/", {"username": owner.username, "password": "nope"})
    assert b"Wrong username or password" in bad.content


def test_site_picker_lists_own_sites_only(logged_in, org, site):
    second = factories.SiteFactory(organization=org, name="Second depot")
    foreign = factories.SiteFactory(name="Foreign depot")
    page = logged_in.get("/dashboard/").content.decode()
    assert site.name in page and second.name in page and foreign.name not in page


def test_site_page_and_snapshot(logged_in, meter):
    now = timezone.now()
    store.reading_batch_ingest(
        device=meter,
        items=[{"timestamp": (now - timedelta(minutes=1)).isoformat(), "total_power": 1234.0, "total_energy": 5.0}],
        source="test",
    )
    page = logged_in.get(f"/dashboard/sites/{meter.site_id}/")
    assert page.status_code == 200
    assert b"vendor/uplot/uPlot.iife.min.js" in page.content and b"dashboard/dashboard.js" in page.content
    snapshot = logged_in.get(f"/dashboard/sites/{meter.site_id}/snapshot.json").json()
    assert snapshot["site"]["id"] == meter.site_id
    [entry] = snapshot["meters"]
    assert entry["id"] == meter.pk and entry["series"][0][1] == 1234.0 and entry["last_seen"]


def test_other_tenants_site_is_404(logged_in):
    foreign = factories.MeterFactory()
    assert logged_in.get(f"/dashboard/sites/{foreign.site_id}/").status_code == 404
    assert logged_in.get(f"/dashboard/sites/{foreign.site_id}/snapshot.json").status_code == 404


def test_user_without_membership_sees_no_sites(client, site):
    user = factories.UserFactory()
    client.force_login(user)
    page = client.get("/dashboard/").content.decode()
    assert "belongs to no organization" in page and site.name not in page


def test_snapshot_carries_the_windows_annotations_of_the_sites_meters_only(logged_in, org, other_org, meter, site):
    now = timezone.now()
    note = factories.AnnotationFactory(meter=meter, ts=now - timedelta(minutes=2), text="HighPower fired")
    factories.AnnotationFactory(meter=meter, ts=now - timedelta(hours=3), text="before the window")
    factories.AnnotationFactory(meter=meter, organization=other_org, ts=now, text="another tenant's row")
    factories.AnnotationFactory(meter=factories.MeterFactory(site=factories.SiteFactory(organization=org)), ts=now)
    snapshot = logged_in.get(f"/dashboard/sites/{site.pk}/snapshot.json").json()
    assert [(a["id"], a["meter_id"], a["text"]) for a in snapshot["annotations"]] == [
        (note.pk, meter.pk, "HighPower fired")
    ]


def test_dashboard_script_draws_annotations():
    # The browser side is exercised by the Playwright test; here: the script reads both sources.
    from django.contrib.staticfiles import finders

    with open(finders.find("dashboard/dashboard.js"), encoding="utf-8") as script:
        body = script.read()
    assert "annotation.created" in body and "snap.annotations" in body


def test_the_topology_page_is_linked_from_the_site_and_scoped(logged_in, client, site):
    page = logged_in.get(f"/dashboard/sites/{site.pk}/")
    assert f'href="/dashboard/sites/{site.pk}/topology/"' in page.text
    topology = logged_in.get(f"/dashboard/sites/{site.pk}/topology/")
    assert topology.status_code == 200
    assert f'data-site="{site.pk}"' in topology.text
    assert "vendor/3d-force-graph/3d-force-graph.min.js" in topology.text
    assert "vendor/force-graph/force-graph.min.js" in topology.text  # the 2D fallback
    foreign = factories.SiteFactory(name="Foreign depot")
    assert logged_in.get(f"/dashboard/sites/{foreign.pk}/topology/").status_code == 404
    assert Client().get(f"/dashboard/sites/{site.pk}/topology/").status_code == 302
