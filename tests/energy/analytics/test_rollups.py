"""Rollups match raw aggregates, stay current on ingest, and retention deletes only what expired."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from energy.analytics.models import AnalyticsSettings, ReadingRollup1h, ReadingRollup1m, ReadingRollup15m, RollupDirty
from energy.analytics.retention import retention_enforce, retention_enforce_all
from energy.analytics.rollups import rollups_refresh_pending
from energy.models import READING_FIELDS, Reading
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed when the test tokens are made; the real hasher is slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)


def raw_aggregates(meter, seconds: int) -> dict:
    """Hand-rolled expectation from the raw rows: per bucket n, avg/min/max/last, register
    increments, and register moves across gaps longer than ANALYTICS_MAX_GAP_SECONDS."""
    readings = list(Reading.objects.filter(meter=meter).order_by("ts"))
    buckets: dict = defaultdict(list)
    previous: dict = {"total_energy": None, "export_energy": None}
    max_gap = timedelta(seconds=django_settings.ANALYTICS_MAX_GAP_SECONDS)
    for reading in readings:
        increments = {}
        for name in list(previous):
            value = getattr(reading, name)
            if value is None:
                continue
            if previous[name] is not None:
                before, before_ts = previous[name]
                moved = value - before if value >= before else value
                increments[f"{name}_gap" if reading.ts - before_ts > max_gap else name] = moved
            previous[name] = (value, reading.ts)
        epoch = int(reading.ts.timestamp())
        buckets[epoch - epoch % seconds].append((reading, increments))
    expected = {}
    for epoch, items in buckets.items():
        row = {"n": len(items)}
        for name in READING_FIELDS:
            values = [getattr(reading, name) for reading, _ in items if getattr(reading, name) is not None]
            row[f"{name}_avg"] = sum(values) / len(values) if values else None
            row[f"{name}_min"] = min(values) if values else None
            row[f"{name}_max"] = max(values) if values else None
            row[f"{name}_last"] = values[-1] if values else None
        for name in ("total_energy", "export_energy"):
            increments = [inc[name] for _, inc in items if name in inc]
            row[f"{name}_inc"] = sum(increments) if increments else None
            gaps = [inc[f"{name}_gap"] for _, inc in items if f"{name}_gap" in inc]
            row[f"{name}_gap"] = sum(gaps) if gaps else None
        expected[datetime.fromtimestamp(epoch, tz=UTC)] = row
    return expected


def test_rollups_match_raw_aggregates(meter):
    rng = random.Random(7)
    register = 1000.0
    rows = []
    for i in range(400):
        ts = T0 + timedelta(seconds=20 * i + rng.randint(0, 15)) + (timedelta(hours=2) if i >= 300 else timedelta())
        register = 3.0 if i == 200 else register + rng.random()  # a reset half way
        rows.append(
            {
                "ts": ts,
                "total_power": rng.uniform(-500, 5000),
                "total_energy": None if i % 17 == 0 else register,
                "voltage_a": rng.uniform(220, 240) if i % 5 else None,
                "power_factor": rng.uniform(0.7, 1.0),
                "export_energy": 5.0 + i * 0.01,
            }
        )
    factories.readings_create(meter, rows)
    # A two-hour silence before reading 300: its register moves are gap energy, not increments.
    assert ReadingRollup1h.objects.filter(meter=meter, total_energy_gap__gt=0).count() == 1
    for model in (ReadingRollup1m, ReadingRollup15m, ReadingRollup1h):
        expected = raw_aggregates(meter, model.bucket_seconds)
        stored = {row.ts: row for row in model.objects.filter(meter=meter)}
        assert set(stored) == set(expected), model
        for ts, values in expected.items():
            for column, value in values.items():
                got = getattr(stored[ts], column)
                assert got == (pytest.approx(value) if value is not None else None), (model, ts, column)


def test_ingest_marks_windows_and_queries_see_fresh_data(
    api, meter, device_client, django_capture_on_commit_callbacks, monkeypatch
):
    client = device_client(meter)
    now = timezone.now().replace(second=0, microsecond=0)
    batch = [{"timestamp": (now - timedelta(minutes=5 - i)).isoformat(), "total_power": 2000.0} for i in range(5)]
    response = client.post("/api/energy/energy-data/bulk", batch)
    assert response.status_code == 201, response.content
    assert RollupDirty.objects.filter(meter=meter).count() == 1
    assert not ReadingRollup15m.objects.filter(meter=meter).exists()
    # A KPI query brings the meter's rollups up to date before reading them.
    data = api.get(
        "/api/energy/analytics/kpi", {"meter": meter.pk, "start": (now - timedelta(hours=1)).isoformat()}
    ).json()
    assert data["peak_demand"]["kw"] == pytest.approx(2.0)
    assert not RollupDirty.objects.exists()
    # After commit the refresh task runs (in-process here, even when a broker is configured).
    from joulepoint.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/api/energy/energy-data/", {"timestamp": now.isoformat(), "total_power": 8000.0})
    assert not RollupDirty.objects.exists()
    assert ReadingRollup1m.objects.get(meter=meter, ts=now).total_power_avg == 8000.0


def test_backfill_recomputes_the_increment_of_the_next_reading(meter, settings):
    settings.ANALYTICS_MAX_GAP_SECONDS = 3 * 3600  # readings two hours apart are no gap here
    factories.readings_create(meter, factories.reading_series(T0, timedelta(hours=2), 2, total_energy=[10.0, 20.0]))
    assert ReadingRollup1h.objects.get(meter=meter, ts=T0 + timedelta(hours=2)).total_energy_inc == 10.0
    # A late reading between them: the 12:00 reading now only adds 20 - 15.
    factories.readings_create(meter, [{"ts": T0 + timedelta(hours=1), "total_energy": 15.0}])
    assert ReadingRollup1h.objects.get(meter=meter, ts=T0 + timedelta(hours=1)).total_energy_inc == 5.0
    assert ReadingRollup1h.objects.get(meter=meter, ts=T0 + timedelta(hours=2)).total_energy_inc == 5.0


def test_refresh_pending_is_idempotent(meter):
    factories.readings_create(
        meter, factories.reading_series(T0, timedelta(minutes=1), 30, total_power=1.0), rollup=False
    )
    RollupDirty.objects.create(meter=meter, start=T0, end=T0 + timedelta(hours=1))
    RollupDirty.objects.create(meter=meter, start=T0, end=T0 + timedelta(hours=1))
    assert rollups_refresh_pending() == 2
    assert rollups_refresh_pending() == 0
    assert ReadingRollup1m.objects.filter(meter=meter).count() == 30
    assert ReadingRollup15m.objects.filter(meter=meter).count() == 2


def test_retention_deletes_only_expired_raw_rows_of_that_org(org, other_org, meter):
    now = timezone.now()
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    old, recent = now - timedelta(days=40), now - timedelta(days=10)
    for target in (meter, foreign):
        factories.readings_create(target, factories.reading_series(old, timedelta(minutes=1), 30, total_power=1.0))
        factories.readings_create(target, factories.reading_series(recent, timedelta(minutes=1), 30, total_power=1.0))
    AnalyticsSettings.objects.create(organization=org, raw_retention_days=30)
    deleted = retention_enforce(organization=org, now=now, batch_size=7)
    assert deleted == {"raw": 30, "rollups": 0}
    assert Reading.objects.filter(meter=meter).count() == 30
    assert not Reading.objects.filter(meter=meter, ts__lt=now - timedelta(days=30)).exists()
    assert Reading.objects.filter(meter=foreign).count() == 60  # no settings: defaults keep forever
    # The downsampled history survives the raw rows.
    assert ReadingRollup1m.objects.filter(meter=meter, ts__lt=now - timedelta(days=30)).count() == 30


def test_rollup_retention_and_the_daily_task(org, meter):
    now = timezone.now()
    factories.readings_create(
        meter, factories.reading_series(now - timedelta(days=30), timedelta(minutes=1), 5, total_power=1.0)
    )
    factories.readings_create(
        meter, factories.reading_series(now - timedelta(days=10), timedelta(minutes=1), 5, total_power=1.0)
    )
    AnalyticsSettings.objects.create(organization=org, raw_retention_days=5, rollup_retention_days=20)
    totals = retention_enforce_all()
    assert totals["raw"] == 10
    assert not ReadingRollup1m.objects.filter(meter=meter, ts__lt=now - timedelta(days=20)).exists()
    assert ReadingRollup1m.objects.filter(meter=meter).count() == 5


def test_refresh_leaves_buckets_older_than_raw_retention_alone(org, meter):
    now = timezone.now()
    factories.readings_create(
        meter, factories.reading_series(now - timedelta(days=8), timedelta(minutes=1), 5, total_power=1.0)
    )
    AnalyticsSettings.objects.create(organization=org, raw_retention_days=5)
    retention_enforce(organization=org)
    kept = ReadingRollup1m.objects.filter(meter=meter).count()
    assert kept == 5
    # A late reading in that old window must not wipe the rollups built from deleted raw rows.
    factories.readings_create(meter, [{"ts": now - timedelta(days=8), "total_power": 9.0}])
    assert ReadingRollup1m.objects.filter(meter=meter).count() == kept


def test_rollup_retention_cuts_every_level_on_the_same_whole_hour(org, meter):
    # KPIs read whole hours from the hourly rollups and quarters from the 15-minute ones: the
    # levels must agree on which hours are left, even when the cutoff falls inside an hour.
    now = timezone.now().replace(minute=37, second=0, microsecond=0)
    hour = (now - timedelta(days=20)).replace(minute=0)
    rows = factories.reading_series(hour - timedelta(hours=1), timedelta(minutes=1), 120, total_power=1.0)
    factories.readings_create(meter, rows)
    AnalyticsSettings.objects.create(organization=org, raw_retention_days=20, rollup_retention_days=20)
    retention_enforce(organization=org, now=now)
    for model, per_hour in ((ReadingRollup1m, 60), (ReadingRollup15m, 4), (ReadingRollup1h, 1)):
        assert not model.objects.filter(meter=meter, ts__lt=hour).exists()
        assert model.objects.filter(meter=meter, ts__gte=hour).count() == per_hour


def test_refresh_isolates_a_failing_meter(meter, site, monkeypatch, caplog):
    """One meter whose refresh fails is logged and keeps its windows for the next run; the
    other meters are refreshed in the same run."""
    from energy.analytics import rollups

    other = factories.MeterFactory(site=site)
    for each in (meter, other):
        factories.readings_create(
            each, factories.reading_series(T0, timedelta(minutes=1), 5, total_power=1.0), rollup=False
        )
        RollupDirty.objects.create(meter=each, start=T0, end=T0 + timedelta(hours=1))
    real_refresh = rollups.rollups_refresh

    def failing_for_meter(*, meter_id, start, end):
        if meter_id == meter.pk:
            raise ValueError("simulated failure of one meter")
        real_refresh(meter_id=meter_id, start=start, end=end)

    monkeypatch.setattr(rollups, "rollups_refresh", failing_for_meter)
    assert rollups_refresh_pending() == 1
    assert f"rollup refresh of meter {meter.pk} failed" in caplog.text
    assert ReadingRollup1m.objects.filter(meter=other).count() == 5
    assert not ReadingRollup1m.objects.filter(meter=meter).exists()
    assert list(RollupDirty.objects.values_list("meter_id", flat=True)) == [meter.pk]

    monkeypatch.setattr(rollups, "rollups_refresh", real_refresh)  # the fault is gone: retried
    assert rollups_refresh_pending() == 1
    assert ReadingRollup1m.objects.filter(meter=meter).count() == 5
    assert not RollupDirty.objects.exists()


def test_many_dirty_windows_of_one_meter_do_not_hide_the_others(meter, site):
    other = factories.MeterFactory(site=site)
    factories.readings_create(other, [{"ts": T0, "total_power": 1.0}], rollup=False)
    for _ in range(5):
        RollupDirty.objects.create(meter=meter, start=T0, end=T0 + timedelta(hours=1))
    RollupDirty.objects.create(meter=other, start=T0, end=T0 + timedelta(hours=1))
    rollups_refresh_pending(limit=2)  # two meters, however many windows the first has
    assert ReadingRollup1m.objects.filter(meter=other).count() == 1
