"""CSV export: streamed, header with units, raw and resampled rows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed when the test tokens are made; the real hasher is slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


EXPORT = "/api/energy/analytics/export"
T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    chunks = list(response.streaming_content)
    return list(csv.reader(io.StringIO(b"".join(chunks).decode())))


def test_raw_export_streams_header_with_units_and_rows(api, meter):
    rows = factories.reading_series(T0, MINUTE, 3, total_power=[1000.0, 1500.5, None], total_energy=[1.0, 1.25, 1.5])
    factories.readings_create(meter, rows)
    response = api.get(EXPORT, {"meter": meter.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"})
    assert "attachment" in response["Content-Disposition"]
    table = read_csv(response)
    assert table[0] == ["timestamp", "meter_id", "total_power (W)", "total_energy (kWh)"]
    assert table[1:] == [
        ["2026-06-10T10:00:00Z", str(meter.pk), "1000", "1"],
        ["2026-06-10T10:01:00Z", str(meter.pk), "1500.5", "1.25"],
        ["2026-06-10T10:02:00Z", str(meter.pk), "", "1.5"],
    ]


def test_sub_second_timestamps_and_number_format(api, meter):
    factories.readings_create(
        meter, [{"ts": T0 + timedelta(microseconds=250_000), "total_power": 1e-05, "total_energy": 2.5}]
    )
    table = read_csv(api.get(EXPORT, {"meter": meter.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}))
    assert table[1] == ["2026-06-10T10:00:00.250000Z", str(meter.pk), "1e-05", "2.5"]


def test_export_accepts_text_csv(api, meter):
    response = api.get(
        EXPORT, {"meter": meter.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}, HTTP_ACCEPT="text/csv"
    )
    assert read_csv(response)[0][0] == "timestamp"


def test_export_streams_in_many_chunks(api, meter):
    rows = factories.reading_series(T0, timedelta(seconds=10), 12_000, total_power=lambda i: float(i))
    factories.readings_create(meter, rows, rollup=False)
    response = api.get(
        EXPORT, {"meter": meter.pk, "fields": "total_power", "start": "2026-06-10T10:00Z", "end": "2026-06-12T00:00Z"}
    )
    chunks = list(response.streaming_content)
    assert len(chunks) >= 2  # the header, then chunks of rows
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 12_001
    assert lines[-1].endswith(",11999")


def test_resampled_export_15min_5min_1h(api, meter):
    power = [float(i) for i in range(60)]
    factories.readings_create(
        meter, factories.reading_series(T0, MINUTE, 60, total_power=power, total_energy=lambda i: 10 + i)
    )
    base = {"meter": meter.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}
    quarter = read_csv(api.get(EXPORT, {**base, "interval": "15min"}))
    assert quarter[0] == ["timestamp", "meter_id", "readings", "total_power (W)", "total_energy (kWh)"]
    assert quarter[1] == ["2026-06-10T10:00:00Z", str(meter.pk), "15", "7", "24"]
    assert len(quarter) == 5
    five = read_csv(api.get(EXPORT, {**base, "interval": "5min", "fields": "total_power,total_energy"}))
    assert five[1:3] == [
        ["2026-06-10T10:00:00Z", str(meter.pk), "5", "2", "14"],
        ["2026-06-10T10:05:00Z", str(meter.pk), "5", "7", "19"],
    ]
    assert len(five) == 13
    hour = read_csv(api.get(EXPORT, {**base, "interval": "1h"}))
    assert hour[1] == ["2026-06-10T10:00:00Z", str(meter.pk), "60", "29.5", "69"]


@pytest.mark.parametrize(
    ("zone", "first_day_start"), [("Asia/Kolkata", "2026-01-10T18:30:00Z"), ("Europe/Berlin", "2026-01-10T23:00:00Z")]
)
def test_daily_export_uses_local_days(api, org, zone, first_day_start):
    meter = factories.MeterFactory(site=factories.SiteFactory(organization=org, timezone=zone))
    start = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    factories.readings_create(
        meter,
        factories.reading_series(
            start, timedelta(minutes=15), 4 * 48, total_power=100.0, total_energy=lambda i: float(i)
        ),
    )
    table = read_csv(api.get(EXPORT, {"meter": meter.pk, "interval": "1d", "start": "2026-01-11", "end": "2026-01-12"}))
    assert table[1][0] == first_day_start
    assert table[1][2] == "96"
    assert table[1][3] == "100"


def test_group_export_orders_by_meter_then_time(api, org, site):
    first, second = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    group = factories.MeterGroupFactory(organization=org, meters=[second, first])
    for meter in (first, second):
        factories.readings_create(meter, factories.reading_series(T0, MINUTE, 2, total_power=float(meter.pk)))
    table = read_csv(
        api.get(
            EXPORT,
            {"group": group.pk, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z", "fields": "total_power"},
        )
    )
    assert [row[1] for row in table[1:]] == [str(first.pk)] * 2 + [str(second.pk)] * 2


def test_export_errors_are_json_400(api, meter):
    response = api.get(EXPORT, {"meter": meter.pk, "interval": "2h"})
    assert response.status_code == 400
    assert response.json()["param"] == "interval"


def test_under_asgi_the_export_is_pulled_chunk_by_chunk():
    import asyncio

    from energy.api.analytics import _async_chunks

    pulled = []

    def chunks():
        for index in range(3):
            pulled.append(index)
            yield f"chunk {index}\n"

    async def consume():
        seen = []
        async for chunk in _async_chunks(chunks()):
            seen.append((chunk, len(pulled)))
        return seen

    # Each chunk is produced only when the server asks for it: never drained into a list.
    assert asyncio.run(consume()) == [("chunk 0\n", 1), ("chunk 1\n", 2), ("chunk 2\n", 3)]


@pytest.mark.parametrize("interval", ["raw", "15min"])
def test_postgresql_timestamp_text_matches_to_char(api, meter, monkeypatch, interval):
    # PostgreSQL prints timestamps itself where DateStyle is ISO and falls back to to_char
    # elsewhere: both must write the same text, sub-second instants included.
    from django.db import connection

    from energy.analytics import export

    if connection.vendor != "postgresql":
        pytest.skip("the server formats CSV lines on PostgreSQL only")
    rows = [
        {"ts": T0 + timedelta(microseconds=micro), "total_power": 1.0}
        for micro in (0, 1, 250_000, 123_456, 60_000_000, 61_500_000)
    ]
    factories.readings_create(meter, rows)
    params = {"meter": meter.pk, "interval": interval, "start": "2026-06-10T10:00Z", "end": "2026-06-10T11:00Z"}
    fast = read_csv(api.get(EXPORT, params))
    monkeypatch.setattr(export, "_iso_datestyle", lambda: False)
    assert read_csv(api.get(EXPORT, params)) == fast
    if interval == "raw":
        assert [row[0] for row in fast[1:]] == [
            "2026-06-10T10:00:00Z",
            "2026-06-10T10:00:00.000001Z",
            "2026-06-10T10:00:00.123456Z",
            "2026-06-10T10:00:00.250000Z",
            "2026-06-10T10:01:00Z",
            "2026-06-10T10:01:01.500000Z",
        ]
