"""Automations bench: prints figures and PASS/FAIL, never asserts.

1. Rule evaluations/s: 100 rules against 10,000 events (one data.ingested batch) through the
   engine (event contexts + engine_match), against the same JsonLogic evaluated directly with the
   library in a loop, in the same run (ratio). Targets: >= 50,000 evals/s on one core, >= 0.5 of
   the direct loop.
2. Webhook deliveries/s and p95 latency to a local receiver through a real Celery worker
   (needs DATABASE_URL and REDIS_URL; the database is migrated). Target: >= 200 deliveries/s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/jp_bench_auto REDIS_URL=redis://127.0.0.1:6379/8 \\
        python bench/automations.py
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")
os.environ.setdefault("AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from automations import jsonlogic  # noqa: E402
from automations.engine import evaluation  # noqa: E402
from automations.engine.contexts import event_contexts  # noqa: E402
from automations.models import Action, Delivery, Rule, RuleAction  # noqa: E402
from energy.events import DATA_INGESTED  # noqa: E402
from joulepoint.events.types import Event  # noqa: E402

RULES = 100
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENTS = 10_000


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def make_rules(rng: random.Random) -> list[Rule]:
    shapes = [
        lambda t: {">": [{"var": ["event.total_power", 0]}, t]},
        lambda t: {"and": [{">": [{"var": "event.total_power"}, t]}, {"<": [{"var": "event.voltage_a"}, 207]}]},
        lambda t: {"or": [{">=": [{"var": "event.current_a"}, t / 230]}, {">": [{"var": "event.thd_v_pct"}, 8]}]},
        lambda t: {"<": [200, {"var": "event.voltage_a"}, 250]},
        lambda t: {"in": [{"var": "event.meter_id"}, [1, 2, 3, 5, 8, 13]]},
    ]
    rules = []
    for index in range(RULES):
        rule = Rule(
            pk=index + 1,
            name=f"r{index}",
            event_key=DATA_INGESTED,
            jsonlogic=shapes[index % len(shapes)](rng.randint(3000, 12000)),
        )
        jsonlogic.validate(rule.jsonlogic)
        rules.append(rule)
    return rules


def make_event(rng: random.Random) -> Event:
    readings = [
        {
            "meter_id": rng.randint(1, 50),
            "site_id": 1,
            "timestamp": f"2025-10-16T10:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z",
            "total_power": rng.uniform(0, 12000),
            "voltage_a": rng.uniform(200, 250),
            "current_a": rng.uniform(0, 50),
            "thd_v_pct": rng.uniform(0, 10),
        }
        for i in range(EVENTS)
    ]
    return Event(
        organization_id=1,
        key=DATA_INGESTED,
        payload={"readings": readings},
        source="bench",
        occurred_at=timezone.now(),
        id=uuid.uuid4(),
    )


def bench_engine() -> None:
    from json_logic import jsonLogic  # the library, called directly

    rng = random.Random(42)
    rules = make_rules(rng)
    event = make_event(rng)
    evaluations = RULES * EVENTS

    def direct() -> int:
        logics = [rule.jsonlogic for rule in rules]
        matched = 0
        occurred = event.occurred_at.isoformat()
        for reading in event.payload["readings"]:
            data = {"event": {**reading, "key": event.key, "occurred_at": occurred}}
            for logic in logics:
                if jsonlogic.truthy(jsonLogic(logic, data)):
                    matched += 1
        return matched

    def engine() -> int:
        return len(evaluation.engine_match(rules, event_contexts(event)))

    best_direct = best_engine = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        m1 = direct()
        best_direct = min(best_direct, time.perf_counter() - t)
        t = time.perf_counter()
        m2 = engine()
        best_engine = min(best_engine, time.perf_counter() - t)
    assert m1 == m2 or print(f"WARNING: engine matched {m2}, direct {m1}")
    engine_rate = evaluations / best_engine
    direct_rate = evaluations / best_direct
    ratio = engine_rate / direct_rate
    print(f"rules x events: {RULES} x {EVENTS} = {evaluations:,} evaluations, {m2:,} matches")
    print(f"engine: {engine_rate:,.0f} evals/s   direct library loop: {direct_rate:,.0f} evals/s   ratio {ratio:.2f}")
    print(f"  {verdict(engine_rate >= 50_000)} engine >= 50,000 evals/s on one core")
    print(f"  {verdict(ratio >= 0.5)} engine >= 0.5 of the direct loop")


class FastReceiver:
    """bench/webhook_receiver.py under uvicorn in a child process."""

    def __init__(self):
        import socket
        import subprocess

        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.webhook_receiver:app", "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        for _ in range(100):
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)

    def stats(self) -> dict:
        import httpx

        return httpx.get(self.url, timeout=5).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def bench_deliveries(count: int = 2000) -> None:
    if not (settings.CELERY_BROKER_URL and os.environ.get("DATABASE_URL")):
        print("deliveries: SKIP (set DATABASE_URL and REDIS_URL to run through a real worker)")
        return
    from django.core.management import call_command

    from joulepoint.tenancy.models import Organization
    from tests.automations.worker import Worker, purge_queue

    call_command("migrate", verbosity=0)
    purge_queue(settings.CELERY_BROKER_URL)
    org, _ = Organization.objects.get_or_create(slug="bench-automations", defaults={"name": "Bench automations"})
    Delivery.objects.for_org(org).delete()
    RuleAction.objects.filter(rule__organization=org).delete()
    Rule.objects.for_org(org).delete()
    Action.objects.for_org(org).delete()
    receiver = FastReceiver()
    action = Action.objects.create(
        organization=org,
        name="bench hook",
        type="webhook",
        config={"url": receiver.url, "method": "POST", "headers": {}, "secret": SECRET, "timeout_seconds": 5},
    )
    rule = Rule.objects.create(organization=org, name="all", event_key=DATA_INGESTED, jsonlogic={"==": [1, 1]})
    RuleAction.objects.create(rule=rule, action=action)
    concurrency = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "8"))
    worker = Worker({"AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE": "1"}, concurrency=concurrency, beat=False).start()
    try:
        time.sleep(4)  # worker boot
        readings = [{"meter_id": i, "site_id": 1, "total_power": 1000.0} for i in range(count)]
        event = Event(
            organization_id=org.pk,
            key=DATA_INGESTED,
            payload={"readings": readings},
            source="bench",
            occurred_at=timezone.now(),
            id=uuid.uuid4(),
        )
        started = time.perf_counter()
        summary = evaluation.rules_evaluate(event=event)  # creates the rows and queues one attempt each
        queued = time.perf_counter() - started
        deadline = time.monotonic() + 300
        done = 0
        while time.monotonic() < deadline:
            done = Delivery.objects.for_org(org).filter(status="succeeded").count()
            if done >= count:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        rows = list(
            Delivery.objects.for_org(org)
            .filter(status="succeeded")
            .values_list("latency_ms", "created_at", "completed_at")
        )
        http = sorted(r[0] for r in rows if r[0] is not None)
        e2e = sorted((r[2] - r[1]).total_seconds() * 1000 for r in rows)
        p95 = http[int(0.95 * (len(http) - 1))] if http else float("nan")
        p95_e2e = e2e[int(0.95 * (len(e2e) - 1))] if e2e else float("nan")
        rate = done / elapsed
        received = receiver.stats()["distinct"]
        print(
            f"deliveries: {done}/{len(summary.deliveries)} succeeded in {elapsed:.2f} s "
            f"(rows created and queued in {queued:.2f} s) with a {concurrency}-process worker; "
            f"receiver saw {received} distinct webhook-ids"
        )
        print(
            f"  {rate:,.0f} deliveries/s   HTTP latency p95 {p95:.1f} ms   created-to-succeeded p95 {p95_e2e:,.0f} ms"
        )
        print(f"  {verdict(rate >= 200 and done == count)} >= 200 deliveries/s, all delivered")
    finally:
        worker.stop()
        receiver.stop()


if __name__ == "__main__":
    bench_engine()
    bench_deliveries(int(os.environ.get("BENCH_DELIVERIES", "2000")))
