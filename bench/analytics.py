"""Analytics benchmark on PostgreSQL: KPI, matrix and export latency against hand-written SQL.

Creates (and drops afterwards) the database jp_bench_an on 127.0.0.1:5432 as user postgres:
one meter with a year of 1-minute readings (525,600 rows) and a 50-meter group with a month
of 1-minute readings (2,160,000 rows), loaded with COPY; rollups are built by the rollup
service. Each figure is timed through the API (in-process client, OAuth2 token) and against a
hand-written SQL query computing the same figure in the same run. Prints PASS/FAIL, never
asserts.

    python bench/analytics.py [--keep] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.database import readings_copy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = "jp_bench_an"
SERVER = "postgres://postgres@127.0.0.1:5432"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
MONTH_START = datetime(2025, 12, 1, tzinfo=UTC)
TZ = "Europe/Berlin"
TARGET_MS, TARGET_RATIO, TARGET_ROWS = 500.0, 2.0, 200_000


def recreate_database() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB}")
        conn.execute(f"CREATE DATABASE {DB}")


def drop_database() -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def copy_readings(meter_id: int, start: datetime, minutes: int, phase: float) -> None:
    """1-minute readings with a daily load shape, written by one COPY of CSV text per meter."""
    import numpy as np
    import pandas as pd

    i = np.arange(minutes)
    hour = (i % 1440) / 60
    power = 4000 + 2500 * np.sin(np.pi * (hour - 6 + phase) / 12) + 300 * np.sin(i * 0.7)
    volt = 230 + 3 * np.sin(i * 0.01)
    frame = pd.DataFrame(
        {
            "meter_id": meter_id,
            "ts": pd.date_range(start, periods=minutes, freq="min").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "total_power": power.round(3),
            "total_energy": (1000 + np.cumsum(power) / 60_000).round(5),
            "voltage_a": volt.round(2),
            "voltage_b": (volt + 0.5).round(2),
            "voltage_c": (volt - 0.5).round(2),
            "power_factor": 0.95,
            "extra": "{}",
            "received_at": datetime.now(UTC).isoformat(),
        }
    )
    readings_copy(frame)


def timed(func, repeat: int) -> float:
    func()  # warm up
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        func()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def sql(query: str, params: list) -> list:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a database kept by --keep (no reload)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    if not args.reuse:
        recreate_database()
    os.environ["DATABASE_URL"] = f"{SERVER}/{DB}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    try:
        call_command("migrate", verbosity=0)
        results = run(args, connection, APIClient)
    finally:
        if not args.keep:
            drop_database()
    failed = [name for name, ok in results if not ok]
    print(f"\nOVERALL: {'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}")


def run(args, connection, APIClient) -> list[tuple[str, bool]]:
    from datetime import timedelta as td

    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    from energy.analytics.rollups import rollups_refresh
    from energy.models import Meter, MeterGroup, Site
    from joulepoint.tenancy.models import Organization
    from joulepoint.tenancy.services import api_credential_create

    year_minutes = 365 * 1440
    month_minutes = 30 * 1440
    rows = year_minutes + 50 * month_minutes
    org = Organization.objects.filter(slug="bench").first()
    if org is not None:
        year_meter = Meter.objects.get(organization=org, serial="YEAR")
        group = MeterGroup.objects.get(organization=org, name="Feeders")
        group_meters = list(group.meters.order_by("pk"))
        AccessToken.objects.filter(token="bench-token").delete()
        credential = api_credential_create(organization=org, name="bench again", scopes=["energy:read"])
        print("reusing the loaded database")
    else:
        org = Organization.objects.create(name="Bench", slug="bench")
        site = Site.objects.create(organization=org, name="Depot", timezone=TZ)
        year_meter = Meter.objects.create(organization=org, site=site, name="Main", serial="YEAR", kind="grid")
        group_meters = [
            Meter.objects.create(organization=org, site=site, name=f"Feeder {n}", serial=f"G{n:02d}") for n in range(50)
        ]
        group = MeterGroup.objects.create(organization=org, name="Feeders")
        group.meters.set(group_meters)
        credential = api_credential_create(organization=org, name="bench", scopes=["energy:read"])

        began = time.perf_counter()
        copy_readings(year_meter.pk, YEAR_START, year_minutes, 0.0)
        for index, meter in enumerate(group_meters):
            copy_readings(meter.pk, MONTH_START, month_minutes, index / 10)
        load_s = time.perf_counter() - began
        print(f"loaded {rows:,} readings with COPY in {load_s:.1f} s ({rows / load_s:,.0f} rows/s)")

        began = time.perf_counter()
        rollups_refresh(meter_id=year_meter.pk, start=YEAR_START, end=YEAR_START + timedelta(days=365))
        for meter in group_meters:
            rollups_refresh(meter_id=meter.pk, start=MONTH_START, end=MONTH_START + timedelta(days=30))
        build_s = time.perf_counter() - began
        print(
            f"rollups (1 min, 15 min, 1 h) built by the service in {build_s:.1f} s ({rows / build_s:,.0f} raw rows/s)"
        )
    token = AccessToken.objects.create(
        application=credential.application,
        token="bench-token",
        scope="energy:read",
        expires=timezone.now() + td(hours=2),
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    year_end = YEAR_START + timedelta(days=365)
    year = {"meter": year_meter.pk, "start": YEAR_START.isoformat(), "end": year_end.isoformat()}
    month = {"group": group.pk, "start": MONTH_START.isoformat(), "end": (MONTH_START + timedelta(days=30)).isoformat()}
    year_range = [year_meter.pk, YEAR_START, YEAR_START + timedelta(days=365)]
    group_ids = [meter.pk for meter in group_meters]
    month_range = [group_ids, MONTH_START, MONTH_START + timedelta(days=30)]

    def api_get(path, params):
        def call():
            response = client.get(path, params)
            if response.status_code != 200:
                raise RuntimeError(response.content)
            return response

        return call

    # Hand-written SQL: the same figures, on the raw table (what one writes without rollups) and
    # on the 15-minute rollup table (the same plan as the service; the ratio target's baseline).
    kpi_raw = """
        WITH r AS (SELECT ts, total_power, total_energy,
                          total_energy - lag(total_energy) OVER (ORDER BY ts) AS d
                   FROM energy_reading WHERE meter_id = %s AND ts >= %s AND ts < %s),
             q AS (SELECT floor(extract(epoch FROM ts) / 900) AS b, avg(total_power) / 1000 AS kw FROM r GROUP BY 1)
        SELECT (SELECT sum(CASE WHEN d >= 0 THEN d ELSE total_energy END) FROM r),
               (SELECT max(kw) FROM q), (SELECT avg(kw) FROM q), (SELECT count(*) FROM r)"""
    kpi_rollup = """
        WITH s AS (SELECT ts, sum(total_power_avg) / 1000 AS kw, sum(total_energy_inc) AS e, sum(n) AS n,
                          min(voltage_a_min) AS vmin, max(voltage_a_max) AS vmax
                   FROM energy_readingrollup15m WHERE meter_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY ts)
        SELECT sum(e), max(kw), avg(kw), sum(n), min(vmin), max(vmax),
               (SELECT ts FROM s ORDER BY kw DESC, ts LIMIT 1) FROM s"""
    matrix_rollup = """
        SELECT (ts AT TIME ZONE %s)::date, extract(hour FROM ts AT TIME ZONE %s), sum(total_energy_inc)
        FROM energy_readingrollup15m WHERE meter_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY 1, 2 ORDER BY 1, 2"""
    matrix_raw = """
        WITH r AS (SELECT ts, total_energy - lag(total_energy) OVER (ORDER BY ts) AS d, total_energy
                   FROM energy_reading WHERE meter_id = %s AND ts >= %s AND ts < %s)
        SELECT (ts AT TIME ZONE %s)::date, extract(hour FROM ts AT TIME ZONE %s),
               sum(CASE WHEN d >= 0 THEN d ELSE total_energy END) FROM r GROUP BY 1, 2 ORDER BY 1, 2"""

    def copy_out(query: str, params: list) -> int:
        size = 0
        with connection.cursor() as cursor, cursor.cursor.copy(query, params) as copy:
            for block in copy:
                size += len(block)
        return size

    export_rollup_sql = (
        "COPY (SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), meter_id, n, total_power_avg,"
        " total_energy_last FROM energy_readingrollup15m WHERE meter_id = ANY(%s) AND ts >= %s AND ts < %s"
        " ORDER BY meter_id, ts) TO STDOUT WITH (FORMAT csv)"
    )
    export_raw_sql = (
        "COPY (SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), meter_id, total_power,"
        " total_energy FROM energy_reading WHERE meter_id = ANY(%s) AND ts >= %s AND ts < %s"
        " ORDER BY meter_id, ts) TO STDOUT WITH (FORMAT csv)"
    )

    exported = {}

    def export(params):
        def call():
            response = client.get("/api/energy/analytics/export", params)
            if response.status_code != 200:
                raise RuntimeError(response.content)
            lines = 0
            for chunk in response.streaming_content:
                lines += chunk.count(b"\n")
            exported[params.get("interval", "raw")] = lines - 1

        return call

    cases = [
        (
            "kpi, 1 meter x 1 year",
            api_get("/api/energy/analytics/kpi", year),
            lambda: sql(kpi_rollup, [[year_meter.pk], *year_range[1:]]),
            lambda: sql(kpi_raw, year_range),
        ),
        (
            "kpi, 50 meters x 1 month",
            api_get("/api/energy/analytics/kpi", month),
            lambda: sql(kpi_rollup, month_range),
            None,
        ),
        (
            "matrix, 1 meter x 1 year",
            api_get("/api/energy/analytics/matrix", year),
            lambda: sql(matrix_rollup, [TZ, TZ, [year_meter.pk], *year_range[1:]]),
            lambda: sql(matrix_raw, [*year_range, TZ, TZ]),
        ),
        (
            "matrix, 50 meters x 1 month",
            api_get("/api/energy/analytics/matrix", month),
            lambda: sql(matrix_rollup, [TZ, TZ, *month_range]),
            None,
        ),
        (
            "export 15min, 50 meters x 1 month",
            export({**month, "interval": "15min"}),
            lambda: copy_out(export_rollup_sql, month_range),
            None,
        ),
        (
            "export 15min, 1 meter x 1 year",
            export({**year, "interval": "15min"}),
            lambda: copy_out(export_rollup_sql, [[year_meter.pk], *year_range[1:]]),
            None,
        ),
    ]
    results = []
    print(f"\n{'case':38} {'api ms':>9} {'hand SQL ms':>12} {'ratio':>6} {'raw SQL ms':>11}  verdict")
    for name, api_call, hand, raw in cases:
        api_ms = timed(api_call, args.repeat)
        hand_ms = timed(hand, args.repeat)
        raw_ms = timed(raw, max(1, args.repeat // 2)) if raw else None
        ratio = api_ms / hand_ms
        ok = api_ms < TARGET_MS and ratio <= TARGET_RATIO
        results.append((name, ok))
        raw_text = f"{raw_ms:11.1f}" if raw_ms else f"{'-':>11}"
        print(f"{name:38} {api_ms:9.1f} {hand_ms:12.1f} {ratio:6.2f} {raw_text}  {'PASS' if ok else 'FAIL'}")

    print("\nexport throughput (rows/s, through the API, iterating the stream):")
    raw_month = {**month, "interval": "raw"}
    for label, params, hand in [
        (
            "15min, 50 meters x 1 month",
            {**month, "interval": "15min"},
            lambda: copy_out(export_rollup_sql, month_range),
        ),
        ("1min, 1 meter x 1 year", {**year, "interval": "1min"}, None),
        ("raw, 50 meters x 1 month", raw_month, lambda: copy_out(export_raw_sql, month_range)),
    ]:
        call = export(params)
        seconds = timed(call, 1 if params["interval"] != "15min" else args.repeat) / 1000
        count = exported[params["interval"]]
        rate = count / seconds
        hand_text = ""
        if hand:
            hand_s = timed(hand, 1) / 1000
            hand_text = f"; hand COPY TO STDOUT {count / hand_s:,.0f} rows/s"
        ok = rate >= TARGET_ROWS
        results.append((f"export rows/s {label}", ok))
        verdict = "PASS" if ok else "FAIL"
        print(f"  {label:30} {count:>10,} rows in {seconds:6.2f} s = {rate:>10,.0f} rows/s{hand_text}  {verdict}")
    return results


if __name__ == "__main__":
    main()
