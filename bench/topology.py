"""Topology graph latency on PostgreSQL: GET /api/energy/topology/nodes/graph for a 2,000-node
site with 1,000 metered nodes, against one hand-written SQL query fetching the same latest
readings, in the same run; and the live overlay's recompute rate (the WebSocket push ceiling).

    python -m bench.topology                  # 60 measured rounds
    python -m bench.topology --rounds 200 --history 500

Creates its own database (`jp_bench_topology` on 127.0.0.1:5432, user postgres; dropped at the
end, no other database is touched) and migrates it. The site: one metered grid connection, 20
switchboards, 200 feeders, 1,779 leaves of which 999 are metered; every meter has `--history`
readings 10 s apart (so a query that scanned history would show). Rows are written in bulk, not
through the services (their rules are the tests' business; this measures reads).

Each round times, in turn: the endpoint through Django's test client (token authentication,
DRF, the selector and JSON rendering: everything but the socket), the same endpoint reading the
structure from the database each time (`uncached`: the baseline of the per-process structure
cache), the selector alone, our
latest-readings query alone, and the hand query (a LATERAL join taking each meter's newest row
from the (meter, ts) index). Prints p50/p95 of each, the ratios to the hand query (targets: p95
under 200 ms, at most 3x) and the overlay's recompute time for one readings frame of all 1,000
meters (how many `topology.update` frames a second one socket can compute).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.database import django_on_database

DEFAULT_DB = "jp_bench_topology"
TARGET_P95_MS = 200.0
TARGET_RATIO = 3.0
HAND_SQL = """
SELECT n.meter_id, r.ts, r.total_power, r.current_a, r.current_b, r.current_c
FROM energy_node n
CROSS JOIN LATERAL (
    SELECT ts, total_power, current_a, current_b, current_c FROM energy_reading
    WHERE meter_id = n.meter_id ORDER BY ts DESC LIMIT 1
) r
WHERE n.site_id = %s AND n.meter_id IS NOT NULL
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--history", type=int, default=200, help="readings per meter")
    parser.add_argument("--database", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--cold", action="store_true", help="skip the server process warm-up (gc.freeze)")
    args = parser.parse_args()

    with django_on_database(args.database, keep=args.keep):
        return run(args)


def build(args):
    """The site, its meters and their history, its graph; returns (organization, site)."""
    from django.db import connection

    from energy.models import Edge, Meter, Node, Site
    from joulepoint.tenancy.models import Organization

    org = Organization.objects.create(name="Bench topology", slug="bench-topology")
    site = Site.objects.create(organization=org, name="Large depot")
    meters = Meter.objects.bulk_create(
        [Meter(organization=org, site=site, name=f"m{i}", serial=f"BENCH-{i:05d}") for i in range(1000)]
    )
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO energy_reading (meter_id, ts, total_power, current_a, current_b, current_c, extra, received_at)
            SELECT m.id, %s - s * interval '10 seconds', random() * 5000, 7.0, 7.1, 7.2, '{}'::jsonb, %s
            FROM energy_meter m, generate_series(0, %s - 1) s WHERE m.site_id = %s
            """,
            [now, now, args.history, site.pk],
        )
    node = lambda name, kind, meter=None: Node(organization=org, site=site, name=name, kind=kind, meter=meter)  # noqa: E731
    grid = Node.objects.bulk_create([node("grid", "grid_connection", meters[0])])[0]
    boards = Node.objects.bulk_create([node(f"board {i}", "switchboard") for i in range(20)])
    feeders = Node.objects.bulk_create([node(f"feeder {i}", "feeder") for i in range(200)])
    metered = iter(meters[1:])
    leaves = Node.objects.bulk_create(
        [node(f"leaf {i}", "load", next(metered) if i % 16 < 9 and i < 1776 else None) for i in range(1779)]
    )
    rest = list(metered)
    for leaf in leaves:  # the last metered leaves, so exactly 1,000 nodes carry a meter
        if leaf.meter_id is None and rest:
            leaf.meter = rest.pop()
            leaf.save(update_fields=["meter"])
    edge = lambda parent, child: Edge(organization=org, site=site, parent=parent, child=child)  # noqa: E731
    Edge.objects.bulk_create(
        [edge(grid, board) for board in boards]
        + [edge(boards[i % 20], feeder) for i, feeder in enumerate(feeders)]
        + [edge(feeders[i % 200], leaf) for i, leaf in enumerate(leaves)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    nodes = Node.objects.filter(site=site)
    print(
        f"site: {nodes.count()} nodes, {nodes.filter(meter__isnull=False).count()} metered, "
        f"{Edge.objects.filter(site=site).count()} edges, {args.history} readings per meter "
        f"({args.history * 1000:,} readings)"
    )
    return org, site


def run(args) -> int:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings
    from django.utils import timezone
    from oauth2_provider.models import AccessToken
    from rest_framework.test import APIClient

    from energy.topology import selectors
    from energy.topology.overlay import topology_overlay_load
    from energy.topology.selectors import LATEST_SAMPLES_PG, latest_samples, topology_graph
    from joulepoint.platform.warmup import server_process_warm_up
    from joulepoint.tenancy.services import api_credential_create

    org, site = build(args)
    # One process here, so its local-memory cache holds the structure versions soundly (a server
    # enables the structure cache where its cache is Redis, shared by every process).
    settings.TOPOLOGY_STRUCTURE_CACHE = True
    if not args.cold:
        # As a server process does at start (joulepoint/asgi.py): without it every full collection
        # walks all of Django, and one landing inside a request decides the p95.
        server_process_warm_up()
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        credential = api_credential_create(organization=org, name="bench", scopes=["energy:read"])
    token = AccessToken.objects.create(
        application=credential.application, token="bench-topology", scope="energy:read",
        expires=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")

    first = client.get("/api/energy/topology/nodes/graph", {"site": site.pk})
    assert first.status_code == 200 and len(first.json()["nodes"]) == 2000, first.content[:300]

    def endpoint() -> None:
        # The server's side only: parsing the answer is the client's cost, not the endpoint's.
        response = client.get("/api/energy/topology/nodes/graph", {"site": site.pk})
        assert response.status_code == 200

    def endpoint_uncached() -> None:
        # The same request with the structure read from the database each time (the endpoint
        # before the per-process structure cache): the same-run baseline of that cache.
        cached = selectors.topology_graph
        selectors.topology_graph = selectors.topology_graph_uncached
        try:
            endpoint()
        finally:
            selectors.topology_graph = cached

    def selector() -> None:
        topology_graph(organization_id=org.pk, site_id=site.pk)

    def ours() -> None:
        assert len(latest_samples(organization_id=org.pk, site_id=site.pk)) == 1000

    def hand() -> None:
        with connection.cursor() as cursor:
            cursor.execute(HAND_SQL, [site.pk])
            assert len(cursor.fetchall()) == 1000

    steps = {
        "endpoint": endpoint,
        "uncached": endpoint_uncached,
        "selector": selector,
        "latest query": ours,
        "hand SQL": hand,
    }
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(5 + args.rounds):
        for name, step in steps.items():
            began = time.perf_counter()
            step()
            if round_ >= 5:
                timings[name].append((time.perf_counter() - began) * 1000)

    print(f"PostgreSQL, {args.rounds} rounds, ms")
    print(f"  {'':14} {'p50':>8} {'p95':>8}")
    for name, values in timings.items():
        print(f"  {name:14} {statistics.median(values):8.2f} {percentile(values, 0.95):8.2f}")
    hand_p50, hand_p95 = statistics.median(timings["hand SQL"]), percentile(timings["hand SQL"], 0.95)
    p95 = percentile(timings["endpoint"], 0.95)
    ratio50 = statistics.median(timings["endpoint"]) / hand_p50
    ratio95 = p95 / hand_p95
    query_ratio = statistics.median(timings["latest query"]) / hand_p50
    uncached_ratio = statistics.median(timings["uncached"]) / statistics.median(timings["endpoint"])
    print(f"  endpoint without the structure cache / with it (p50): {uncached_ratio:.2f}")
    print(f"  latest query / hand SQL (p50): {query_ratio:.2f}")
    print(f"  endpoint / hand SQL: p50 {ratio50:.1f}x, p95 {ratio95:.1f}x  (target <= {TARGET_RATIO:.0f}x)")
    verdict = "PASS" if p95 < TARGET_P95_MS else "FAIL"
    print(f"  endpoint p95 {p95:.1f} ms  (target < {TARGET_P95_MS:.0f} ms)  {verdict}")
    with connection.cursor() as cursor:
        query = LATEST_SAMPLES_PG.format(at_condition="")
        cursor.execute("EXPLAIN " + query, {"at": None, "organization_id": org.pk, "site_id": site.pk})
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print("  plan of the latest-readings query:\n    " + plan.replace("\n", "\n    "))

    overlay = topology_overlay_load(organization_ids=[org.pk], site_id=site.pk)
    now = datetime.now(UTC)
    frame = [
        {"meter_id": meter_id, "timestamp": now.isoformat(), "total_power": 1000.0, "current_a": 5.0}
        for meter_id in overlay.meter_ids
    ]
    pushes = []
    for _ in range(30):
        began = time.perf_counter()
        overlay.apply(frame)
        overlay.update(now=now)
        pushes.append(time.perf_counter() - began)
    per_push = statistics.median(pushes)
    print(
        f"overlay: apply a 1,000-reading frame + recompute the 2,000-node update: median {per_push * 1000:.1f} ms "
        f"-> at most {1 / per_push:.0f} updates/s per core (the socket pushes at most 4/s per site)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
