"""Where a device request's CPU goes: the platform's WSGI application called in a loop, in process.

    python -m bench.ingest_pieces                    # 2,000 bare and 2,000 single requests, 20 bulk
    python -m bench.ingest_pieces --requests 5000 --bulk 0

One request at a time, in this process: no server, no HTTP, no other thread competing, against
PostgreSQL and Redis as deployed. So the figures are what a request itself costs, free of the
connection placement and scheduling that move bench/ingest.py's rates by ±15 %. Printed:

- CPU per request (user + system, every thread of the process) of the bare DRF view (the
  baseline, as in bench/ingest.py), of a single reading and of a bulk of 1,000 readings, with
  the single reading's ratio to the bare view (the inverse of what the 0.4 target measures);
- the CPU of named pieces of each path (`time.thread_time()` around each, so nested pieces
  overlap), and what other threads spent (the live fan-out sender, for instance).

Each single reading here is a group of one; under gunicorn gthread, concurrent requests share
the store and the after-commit work (docs/serving.md). It creates the database
`jp_bench_pieces` and drops it at the end.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import io
import os
import sys
import time
from collections.abc import Callable

import orjson

from bench.database import database_create, database_drop
from bench.ingest import DEFAULT_REDIS, Device, bulk_body, reading_json, signed_headers

DATABASE = "jp_bench_pieces"
BULK_SIZE = 1_000
WARMUP_REQUESTS = 200

# (indent, "module:attribute path") of the pieces timed, in call order; indent shows nesting.
PIECES = (
    (0, "energy.api.authentication:DeviceKeyAuthentication.authenticate"),
    (0, "energy.api.views:ReadingViewSet.create"),
    (0, "energy.api.views:ReadingViewSet.bulk"),
    (1, "energy.ingest.store:readings_prepare"),
    (1, "energy.ingest.store:readings_store"),
    (2, "energy.ingest.store:_insert_readings"),
    (2, "energy.power_quality.detection:readings_detect"),
    (2, "energy.ingest.store:_ingested_payload"),
    (1, "django.db.backends.base.base:BaseDatabaseWrapper.commit"),
    (1, "joulepoint.events.services:event_fan_out"),
    (2, "automations.engine.cache:rules_exist"),
    (2, "energy.live.fanout:_group_is_empty"),
    (2, "joulepoint.events.listeners:listeners_epoch_observe"),
    (1, "energy.api.serializers:stored_reading_data"),
)


class Pieces:
    """Wraps named functions so each call adds the calling thread's CPU time to its total."""

    def __init__(self, specs: tuple[tuple[int, str], ...]) -> None:
        self.specs = specs
        self.totals: collections.Counter[str] = collections.Counter()
        for _, spec in specs:
            self._wrap(spec)

    def _wrap(self, spec: str) -> None:
        module_name, path = spec.split(":")
        *owner_path, attribute = path.split(".")
        owner = importlib.import_module(module_name)
        for name in owner_path:
            owner = getattr(owner, name)
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            began = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[spec] += time.thread_time() - began

        setattr(owner, attribute, timed)

    def report(self, requests: int) -> list[str]:
        return [
            f"      {'  ' * indent}{1000 * self.totals[spec] / requests:7.3f} ms  {spec.split(':')[1]}"
            for indent, spec in self.specs
            if self.totals[spec]
        ]


def environ(path: str, body: bytes, headers: dict[str, str]) -> dict:
    """A WSGI environ for a POST, as gunicorn would build it."""
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": headers.pop("Content-Type", "application/json"),
    }
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def measure(application, environs: list[dict], expect: str) -> tuple[float, float, float]:
    """CPU per request of the whole process, of this thread, and wall time per request (seconds)."""
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    process, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
    for env in environs:
        response = application(env, start_response)
        b"".join(response)
        response.close()
    n = len(environs)
    costs = ((time.process_time() - process) / n, (time.thread_time() - thread) / n, (time.perf_counter() - wall) / n)
    wrong = [status for status in statuses if not status.startswith(expect)]
    if wrong:
        raise SystemExit(f"expected {expect}, got {wrong[0]} ({len(wrong)} of {n})")
    return costs


def settings_environ(redis_url: str) -> None:
    """The settings the servers of bench/ingest.py run with, for this process's Django."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DATABASE}",
            "REDIS_URL": redis_url,
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "DEVICE_RATE_LIMIT_PER_MINUTE": str(10**9),
        }
    )


def run(requests: int, bulk: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from energy.models import Meter, Site
    from joulepoint.tenancy.services import tenant_create
    from joulepoint.wsgi import application

    organization = tenant_create(name="bench pieces").organization
    site = Site.objects.create(organization=organization, name="site")
    meters = [
        Meter.objects.create(organization=organization, site=site, name=name, serial=name)
        for name in ("single", "bulk")
    ]
    single, bulk_meter = (Device(meter_id=m.pk, key=str(m.device_key), secret=m.device_secret) for m in meters)
    pieces = Pieces(PIECES)

    next_n = iter(range(10**9))

    def bare_env() -> dict:
        return environ("/bench/bare/", orjson.dumps(reading_json(0)), {})

    def single_env() -> dict:
        body = orjson.dumps(reading_json(next(next_n)))
        return environ("/api/energy/energy-data/", body, signed_headers(single, body))

    def bulk_env(index: int) -> dict:
        body = bulk_body(index * BULK_SIZE, BULK_SIZE)
        return environ("/api/energy/energy-data/bulk/", body, signed_headers(bulk_meter, body))

    def phase(label: str, make: Callable[[], dict], count: int, expect: str) -> float:
        measure(application, [make() for _ in range(min(count, WARMUP_REQUESTS))], expect)
        pieces.totals.clear()
        process, thread, wall = measure(application, [make() for _ in range(count)], expect)
        print(
            f"  {label:<16} {1000 * process:7.3f} ms CPU/request   (this thread {1000 * thread:.3f}, "
            f"other threads {1000 * max(0.0, process - thread):.3f}; wall {1000 * wall:.3f} ms)   n={count}"
        )
        for line in pieces.report(count):
            print(line)
        return process

    print(f"== one request at a time, in process (PostgreSQL, Redis cache and channel layer), pid {os.getpid()}")
    bare = phase("bare DRF view", bare_env, requests, "200")
    one = phase("single reading", single_env, requests, "201")
    if bulk:
        bulk_index = iter(range(10**6))
        phase(f"bulk ({BULK_SIZE:,})", lambda: bulk_env(next(bulk_index)), bulk, "201")
    # The target counts the whole machine (server, PostgreSQL, client), this the server's CPU only.
    print(f"  single ÷ bare CPU: {one / bare:.2f}   (bench/ingest.py's 0.4 target: about 2.5, machine-wide)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2_000, help="bare and single requests each (default 2,000)")
    parser.add_argument("--bulk", type=int, default=20, help="bulk requests of 1,000 readings (default 20; 0: none)")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis URL (default {DEFAULT_REDIS})")
    args = parser.parse_args(argv)
    settings_environ(args.redis)
    database_create(DATABASE)
    try:
        run(args.requests, args.bulk)
    finally:
        from django.db import connections

        connections.close_all()
        database_drop(DATABASE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
