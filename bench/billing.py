"""Billing benchmark on PostgreSQL: a month's preview of a 20-meter account against hand-written
SQL computing kWh per TOU period on the same rollups, and ledger movements per second with 8
concurrent writers on one wallet against the same lock-insert-update written by hand.

Creates (and drops afterwards) the database jp_bench_billing on 127.0.0.1:5432 as user postgres:
20 meters with 30 days of 1-minute readings (864,000 rows) loaded with COPY; rollups built by the
rollup service. Prints figures, ratios and PASS/FAIL against issue 18's targets; never asserts.

    python bench/billing.py [--keep] [--repeat 3] [--moves 150] [--ledger-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from bench.database import readings_copy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.get("BENCH_BILLING_DB", "jp_bench_billing")  # another name lets two runs share a server
SERVER = "postgres://postgres@127.0.0.1:5432"
START = datetime(2025, 10, 31, 23, tzinfo=UTC)  # 1 November 2025, local midnight in Berlin
DAYS = 30
METERS = 20
WRITERS = 8
TARGET_S, TARGET_RATIO, TARGET_MOVES = 1.0, 3.0, 500.0
WEEK = {"months": [1, 12], "day_types": ["weekday"]}
PERIODS = [
    {"name": "peak", **WEEK, "start": "07:00", "end": "21:00", "rate": "0.3400"},
    {"name": "off-peak", **WEEK, "start": "00:00", "end": "07:00", "rate": "0.2200"},
    {"name": "off-peak", **WEEK, "start": "21:00", "end": "24:00", "rate": "0.2200"},
    {
        "name": "weekend",
        "months": [1, 12],
        "day_types": ["weekend"],
        "start": "00:00",
        "end": "24:00",
        "rate": "0.1800",
    },
]
HAND_SQL = """
    SELECT CASE WHEN extract(isodow FROM local) >= 6 THEN 'weekend'
                WHEN local::time >= '07:00' AND local::time < '21:00' THEN 'peak' ELSE 'off-peak' END AS period,
           sum(total_energy_inc)
    FROM (SELECT ts AT TIME ZONE 'Europe/Berlin' AS local, total_energy_inc FROM energy_readingrollup15m
          WHERE meter_id = ANY(%s) AND ts >= %s AND ts < %s) r
    GROUP BY 1
"""


def recreate_database() -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")


def drop_database() -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def copy_readings(meter_id: int, minutes: int, phase: float) -> None:
    import numpy as np
    import pandas as pd

    i = np.arange(minutes)
    hour = (i % 1440) / 60
    power = 4000 + 2500 * np.sin(np.pi * (hour - 6 + phase) / 12) + 300 * np.sin(i * 0.7)
    frame = pd.DataFrame(
        {
            "meter_id": meter_id,
            "ts": pd.date_range(START, periods=minutes, freq="min").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "total_power": power.round(3),
            "total_energy": (1000 + np.cumsum(power) / 60_000).round(5),
            "extra": "{}",
            "received_at": datetime.now(UTC).isoformat(),
        }
    )
    readings_copy(frame)


def median_seconds(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def writers_rate(move, moves: int) -> float:
    from django.db import connections

    errors: list[Exception] = []

    def writer(n: int) -> None:
        try:
            for i in range(moves):
                move(n, i)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return WRITERS * moves / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--moves", type=int, default=150, help="movements per writer")
    parser.add_argument("--ledger-only", action="store_true", help="skip the preview (and its 864,000 readings)")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"{SERVER}/{DB}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    try:
        call_command("migrate", verbosity=0)
        run(args)
    finally:
        if not args.keep:
            drop_database()


def run(args) -> None:
    from joulepoint.tenancy.models import Organization

    org = Organization.objects.create(name="Bench billing", slug="bench-billing")
    checks = [] if args.ledger_only else preview_run(args, org)
    ledger_run(args, org, checks)


def preview_run(args, org) -> list[tuple[str, bool]]:
    from django.db import connection

    from billing.models import Account, Tariff, TariffVersion
    from billing.preview import account_preview
    from energy.analytics.rollups import rollups_refresh
    from energy.models import Meter, Site

    site = Site.objects.create(organization=org, name="Bench site", timezone="Europe/Berlin")
    meters = [Meter.objects.create(organization=org, site=site, name=f"M{n}", serial=f"B{n}") for n in range(METERS)]
    minutes = DAYS * 1440
    began = time.perf_counter()
    for n, meter in enumerate(meters):
        copy_readings(meter.pk, minutes, phase=n / METERS)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE energy_reading")  # a fresh table without statistics gets poor plans
    print(f"loaded {METERS * minutes:,} readings in {time.perf_counter() - began:.1f} s", flush=True)
    for meter in meters:
        rollups_refresh(meter_id=meter.pk, start=START, end=START + timedelta(days=DAYS))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"{METERS} meters x {minutes:,} 1-minute readings loaded and rolled up in {time.perf_counter() - began:.1f} s"
    )

    tariff = Tariff.objects.create(organization=org, name="Bench TOU", currency="EUR", country="DE", subdivision="BE")
    TariffVersion.objects.create(tariff=tariff, valid_from=datetime(2020, 1, 1).date(), periods=PERIODS)
    account = Account.objects.create(organization=org, name="Bench account", site=site, tariff=tariff)
    account.meters.set(meters)
    end = START + timedelta(days=DAYS)
    ids = [meter.pk for meter in meters]

    preview_s = median_seconds(lambda: account_preview(account=account, start=START, end=end), args.repeat)

    def hand():
        with connection.cursor() as cursor:
            cursor.execute(HAND_SQL, [ids, START, end])
            return cursor.fetchall()

    hand_s = median_seconds(hand, args.repeat)
    by_period = {name: Decimal(repr(kwh)).quantize(Decimal("0.001")) for name, kwh in hand()}
    costing = account_preview(account=account, start=START, end=end)
    mine = {}
    for line in costing.bill.lines:
        if line.kind == "energy":
            mine[line.period] = mine.get(line.period, Decimal(0)) + line.quantity
    same = all(abs(mine[name] - kwh) < Decimal("0.01") for name, kwh in by_period.items())
    ratio = preview_s / hand_s
    print(f"preview (service, 20 meters, {DAYS} days): {preview_s * 1000:.0f} ms; "
          f"hand SQL kWh per TOU period: {hand_s * 1000:.0f} ms; ratio {ratio:.1f}x; kWh agree: {same}")  # fmt: skip
    print(f"  kWh per period: service {sorted((k, str(v)) for k, v in mine.items())}")
    print(f"                  hand SQL {sorted((k, str(v)) for k, v in by_period.items())}")
    print(f"  total {costing.bill.total} {costing.bill.currency}")
    return [
        (f"preview under {TARGET_S:.0f} s", preview_s < TARGET_S),
        (f"preview within {TARGET_RATIO:.0f}x of hand SQL", ratio <= TARGET_RATIO),
        ("kWh per period agree with hand SQL", same),
    ]


def ledger_run(args, org, checks: list[tuple[str, bool]]) -> None:
    from django.db import connection

    from billing.models import Wallet, WalletTransaction
    from billing.wallets import wallet_move

    wallet = Wallet.objects.create(organization=org, name="Bench wallet", currency="EUR")
    wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="credit", amount=Decimal("100000"), currency="EUR",
                idempotency_key="opening")  # fmt: skip

    def service_move(n: int, i: int) -> None:
        kind = "topup" if (n + i) % 2 else "debit"
        wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind=kind, amount=Decimal("1.25"), currency="EUR",
                    idempotency_key=f"s-{n}-{i}")  # fmt: skip

    service_rate = writers_rate(service_move, args.moves)
    wallet.refresh_from_db()
    rows = WalletTransaction.objects.filter(wallet=wallet)
    ledger = sum(rows.values_list("amount", flat=True), Decimal(0))
    exact = wallet.balance == ledger == Decimal("100000") and rows.count() == 1 + WRITERS * args.moves

    table, wallets = WalletTransaction._meta.db_table, Wallet._meta.db_table
    baseline_wallet = Wallet.objects.create(organization=org, name="Baseline wallet", currency="EUR")

    def hand_move(n: int, i: int) -> None:
        from django.db import transaction

        amount = Decimal("1.25") if (n + i) % 2 else Decimal("-1.25")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT balance FROM {wallets} WHERE id = %s FOR UPDATE", [baseline_wallet.pk])
            (balance,) = cursor.fetchone()
            cursor.execute(
                f"INSERT INTO {table} (organization_id, wallet_id, kind, amount, currency, balance_after, "
                "idempotency_key, reference, source, reason, created_at) "
                "VALUES (%s, %s, 'debit', %s, 'EUR', %s, %s, '', '', '', now())",
                [org.pk, baseline_wallet.pk, amount, balance + amount, f"h-{n}-{i}"],
            )
            cursor.execute(f"UPDATE {wallets} SET balance = %s WHERE id = %s", [balance + amount, baseline_wallet.pk])

    hand_rate = writers_rate(hand_move, args.moves)
    print(f"ledger, {WRITERS} writers on one wallet: service {service_rate:,.0f} movements/s, "
          f"hand SQL (lock, insert, update) {hand_rate:,.0f}/s, ratio {service_rate / hand_rate:.2f}; "
          f"balance equals the ledger: {exact}")  # fmt: skip
    checks += [
        (f"ledger >= {TARGET_MOVES:.0f} movements/s", service_rate >= TARGET_MOVES),
        ("balance exact", exact),
    ]
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
