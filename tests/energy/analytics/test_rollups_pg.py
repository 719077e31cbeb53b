"""Rollups on PostgreSQL: values at the plausible bounds cannot overflow, and a refresh never
blocks the meter's ingest or key rotation."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from energy.analytics import rollups
from energy.analytics.models import ReadingRollup1h, ReadingRollup15m, RollupDirty
from energy.devices.services import device_credential_rotate
from energy.models import READING_FIELDS, Meter, Reading
from tests import factories

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's column types and row locks"),
]


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_sums_of_readings_at_the_bounds_do_not_overflow(api, meter):
    """Ten minutes of one reading a second, every field at its bound, the registers jumping between
    0 and their highest value (each jump up counts as energy): the rollups store finite sums and
    the analytics answer 200."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    seconds = 600
    rows = []
    for i in range(seconds):
        row = {"ts": hour + timedelta(seconds=i)}
        for name, (_, low, high) in READING_FIELDS.items():
            row[name] = high if i % 2 else (low if name in ("total_energy", "export_energy") else high)
        rows.append(row)
    factories.readings_create(meter, rows)
    assert Reading.objects.filter(meter=meter).count() == seconds
    top = ReadingRollup1h.objects.get(meter=meter, ts=hour)
    assert top.n == seconds
    assert top.total_power_avg == pytest.approx(READING_FIELDS["total_power"][2])
    # Every other reading jumps the register from 0 to 1e12 kWh.
    assert top.total_energy_inc == pytest.approx(seconds // 2 * READING_FIELDS["total_energy"][2])
    assert ReadingRollup15m.objects.get(meter=meter, ts=hour).total_power_max == READING_FIELDS["total_power"][2]
    window = {"meter": meter.pk, "start": hour.isoformat(), "end": (hour + timedelta(hours=1)).isoformat()}
    for path, extra in (("kpi", {}), ("matrix", {}), ("live_trail", {})):
        response = api.get(f"/api/energy/analytics/{path}", {**window, **extra})
        assert response.status_code == 200, (path, response.content)


def test_refresh_does_not_block_the_meters_ingest_or_rotation(meter, device_client, monkeypatch):
    """The refresh is held mid-way (after it took its locks, before it commits); meanwhile a
    single reading of that meter is stored and its key rotated. Neither waits for the refresh:
    the session's lock_timeout turns any wait on its locks into an error instead of a hang."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    factories.readings_create(
        meter, factories.reading_series(start, timedelta(minutes=1), 60, total_power=1.0), rollup=False
    )
    RollupDirty.objects.create(meter=meter, start=start, end=start + timedelta(hours=1))
    held, release = threading.Event(), threading.Event()
    real_refresh = rollups.rollups_refresh

    def held_refresh(**kwargs):
        real_refresh(**kwargs)
        held.set()
        release.wait(60)

    monkeypatch.setattr(rollups, "rollups_refresh", held_refresh)
    errors: list[BaseException] = []

    def refresh_in_a_worker():
        try:
            rollups.rollups_refresh_pending()
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            connection.close()

    worker = threading.Thread(target=refresh_in_a_worker)
    worker.start()
    try:
        assert held.wait(30), "the refresh never reached its hold"
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        client = device_client(meter)
        response = client.post(
            "/api/energy/energy-data/",
            {"timestamp": (start + timedelta(minutes=30, seconds=30)).isoformat(), "total_power": 5.0},
        )
        assert response.status_code == 201, response.content
        device_credential_rotate(device=Meter.objects.get(pk=meter.pk))
        # Both finished while the refresh still held its transaction open.
        assert worker.is_alive() and not release.is_set()
    finally:
        release.set()
        worker.join(60)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert not errors, errors
    # The reading stored meanwhile marked its own window, which the next run refreshes.
    monkeypatch.setattr(rollups, "rollups_refresh", real_refresh)
    rollups.rollups_refresh_pending()
    assert not RollupDirty.objects.exists()
    assert ReadingRollup1h.objects.get(meter=meter, ts=start).n == 61
