"""What the audit trail costs, on PostgreSQL, in one process.

    python -m bench.audit                  # 5 rounds of 100 single readings per mode
    python -m bench.audit --rounds 9 --requests 300

Creates its own database (`jp_bench_audit` on 127.0.0.1:5432, user postgres; dropped at the
end). Prints, for information and against a baseline measured in the same run:

- single readings over HTTP (Django's test client through the whole middleware stack and the
  ingest view) with the audit middleware and without it, alternating round by round: readings
  are not audited, so the middleware's per-request work is all the trail costs ingest; target
  ratio >= 0.95;
- the middleware alone, per request, against a no-op;
- a configuration write (a site renamed) audited and with auditlog disabled: what one entry costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.database import django_on_database

DEFAULT_DB = "jp_bench_audit"
TARGET_RATIO = 0.95
AUDIT_MIDDLEWARE = "joulepoint.audit.middleware.AuditMiddleware"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--database", default=DEFAULT_DB)
    args = parser.parse_args()
    with django_on_database(args.database):
        return run(args.rounds, args.requests)


def run(rounds: int, requests: int) -> int:
    import orjson
    from auditlog.context import disable_auditlog
    from django.conf import settings
    from django.test import Client, override_settings

    from energy.models import Meter, Site
    from joulepoint.tenancy.models import Organization

    organization = Organization.objects.create(name="Bench", slug="bench")
    site = Site.objects.create(organization=organization, name="Depot", timezone="UTC")
    meters = {
        mode: Meter.objects.create(organization=organization, site=site, name=mode, serial=f"SN-{mode}")
        for mode in ("audited", "plain")
    }
    without = [m for m in settings.MIDDLEWARE if m != AUDIT_MIDDLEWARE]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    sent = {"audited": 0, "plain": 0}
    rates: dict[str, list[float]] = {"audited": [], "plain": []}

    def burst(mode: str) -> float:
        client = Client()
        meter = meters[mode]
        began = time.perf_counter()
        for _ in range(requests):
            ts = start + timedelta(seconds=sent[mode])
            sent[mode] += 1
            body = orjson.dumps({"timestamp": ts.isoformat(), "total_power": 1000.0 + sent[mode]})
            response = client.post(
                "/api/energy/energy-data/",
                body,
                content_type="application/json",
                HTTP_X_DEVICE_KEY=str(meter.device_key),
            )
            assert response.status_code == 201, response.content
        return requests / (time.perf_counter() - began)

    print(f"the audit middleware alone: {middleware_cost_us():.1f} µs per request (no-op view)")
    if not requests:
        return 0
    burst("audited")  # warm-up: imports, caches, the first connection
    with override_settings(MIDDLEWARE=without):
        burst("plain")
    for _ in range(rounds):
        rates["audited"].append(burst("audited"))
        with override_settings(MIDDLEWARE=without):
            rates["plain"].append(burst("plain"))
    audited, plain = statistics.median(rates["audited"]), statistics.median(rates["plain"])
    ratio = audited / plain
    print(f"single readings/s: with the audit middleware {audited:.0f}, without {plain:.0f}")
    print(f"ratio {ratio:.3f} (target >= {TARGET_RATIO}): {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}")

    def renames(n: int) -> float:
        began = time.perf_counter()
        for i in range(n):
            site.name = f"Depot {i}"
            site.save()
        return (time.perf_counter() - began) / n * 1000

    with disable_auditlog():
        bare = statistics.median(renames(200) for _ in range(3))
    logged = statistics.median(renames(200) for _ in range(3))
    print(f"a site renamed: {logged:.2f} ms audited, {bare:.2f} ms without the trail ({logged / bare:.2f}x)")
    return 0


def middleware_cost_us(n: int = 20000) -> float:
    """The middleware's own work per request (auditlog's context and signal hook-up, our
    callables), against the same request through a no-op, median of 5 interleaved runs."""
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from joulepoint.audit.middleware import AuditMiddleware

    request = RequestFactory().post("/api/energy/energy-data/", data=b"{}", content_type="application/json")
    request.user = AnonymousUser()
    audited = AuditMiddleware(lambda r: None)

    def per_call(handler) -> float:
        began = time.perf_counter()
        for _ in range(n):
            handler(request)
        return (time.perf_counter() - began) / n * 1e6

    costs = [per_call(audited) - per_call(lambda r: None) for _ in range(5)]
    return statistics.median(costs)


if __name__ == "__main__":
    sys.exit(main())
