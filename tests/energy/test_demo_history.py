"""The demo's month of history (energy.demo_history): what a newcomer sees right after `make run`."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from energy import demo as energy_demo
from energy.demo import demo_ensure
from energy.demo_history import demo_history_backfill
from energy.models import Meter, MeterGroup, Reading, Site
from energy.power_quality.models import PQEvent, ProtectionEvent
from tests.conftest import _token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(tmp_path, monkeypatch):
    # energy's own history: other apps' demo parts are tested with those apps (mlops would seed a
    # week of its own when asked for no history, as here).
    monkeypatch.setattr(energy_demo, "_extensions", {})
    data = demo_ensure(state_path=tmp_path / "demo.json")
    site = Site.objects.get(pk=data["site"]["id"])
    meters = {meter.kind: meter for meter in Meter.objects.filter(site=site)}
    return site, meters


def test_a_month_of_history_makes_kpi_matrix_and_forecast_meaningful_for_every_meter(demo, tmp_path, client):
    site, meters = demo
    now = timezone.now()
    state = tmp_path / "simulator-state.json"

    result = demo_history_backfill(site=site, meters=meters, now=now, state_path=state)

    # 30 days of 15-minute readings for each of the five meters, through the real ingest path.
    assert result.stored == 5 * 30 * 96 + 5
    for meter in meters.values():
        stamps = Reading.objects.filter(meter=meter).order_by("ts").values_list("ts", flat=True)
        assert stamps.first() <= now - timedelta(days=29, hours=23)
        assert stamps.last() >= now - timedelta(minutes=15)
    power = {
        kind: list(Reading.objects.filter(meter=m).values_list("total_power", flat=True)) for kind, m in meters.items()
    }
    assert min(power["pv"]) == 0 and max(power["pv"]) > 5000  # nights and sunny middays
    assert min(power["battery"]) < -1000 and max(power["battery"]) > 1000  # discharges and charges
    assert min(power["ev_charger"]) == 0 and max(power["ev_charger"]) >= 7000  # sessions come and go
    # A few sags and swells at the grid connection, and one breaker trip of the EV charger.
    kinds = list(PQEvent.objects.filter(meter=meters["grid"]).values_list("kind", flat=True))
    assert kinds.count("sag") >= 3 and kinds.count("swell") >= 2
    assert list(ProtectionEvent.objects.filter(kind="trip").values_list("meter__kind", flat=True)) == ["ev_charger"]
    # The live simulator continues from where the history ends.
    saved = json.loads(state.read_text())
    assert saved["device_keys"] == sorted(str(m.device_key) for m in meters.values())

    token = _token(site.organization, ["energy:read"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for kind, meter in meters.items():
        kpi = client.get("/api/energy/analytics/kpi", {"meter": meter.pk}, **auth)
        assert kpi.status_code == 200, (kind, kpi.content)
        energy = kpi.json()["energy"]
        assert (energy["imported_kwh"] or 0) + (energy["exported_kwh"] or 0) > 0, kind
        matrix = client.get("/api/energy/analytics/matrix", {"meter": meter.pk}, **auth)
        assert matrix.status_code == 200, (kind, matrix.content)
        rows = matrix.json()["rows"]
        assert len(rows) >= 28 and all(row["total"] is not None for row in rows[1:-1]), kind
        forecast = client.get("/api/energy/analytics/forecast", {"meter": meter.pk}, **auth)
        assert forecast.status_code == 200, (kind, forecast.content)
        assert forecast.json()["points"] and all(p["kw"] is not None for p in forecast.json()["points"]), kind
    loads = MeterGroup.objects.get(name="All loads")
    kpi = client.get("/api/energy/analytics/kpi", {"group": loads.pk}, **auth).json()
    assert kpi["energy"]["imported_kwh"] > 100  # a working depot's day

    # Running the demo setup again stores nothing: the history is already there.
    again = demo_history_backfill(site=site, meters=meters, state_path=state)
    assert again.stored == 0
    assert Reading.objects.count() == result.stored


def test_history_ends_at_the_first_live_reading_and_keeps_the_simulator_state(demo, tmp_path):
    site, meters = demo
    now = timezone.now()
    live = now - timedelta(hours=1)
    for meter in meters.values():
        Reading.objects.create(meter=meter, ts=live, total_power=1.0, received_at=live)
    state = tmp_path / "simulator-state.json"

    result = demo_history_backfill(site=site, meters=meters, now=now, days=2, state_path=state)

    assert result.end == live
    assert not Reading.objects.filter(ts__gt=live).exists()
    steps = -(-(live - result.start) // timedelta(minutes=15))  # 15-minute steps before the live reading
    assert result.start <= now - timedelta(days=2)
    assert Reading.objects.filter(meter=meters["load"], ts__lt=live).count() == steps
    assert not state.exists()  # the live simulator already has its own registers
