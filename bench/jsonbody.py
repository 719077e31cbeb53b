"""What strict JSON (duplicate keys refused) costs the ingest path, in process.

    python -m bench.jsonbody [--rounds 2000]

Parses the bench's own bodies (bench/ingest.py: one reading, a bulk of 1,000) with plain
`orjson.loads` (the baseline: what ingest did before) and with
`joulepoint.platform.jsonbody.json_loads_strict` (orjson plus the colon count), in the same run,
and prints µs per body and the ratio; a body with an escape (which takes the exact path) and
Python's `json.loads` with an object_pairs_hook are printed too, to show what the count saves.
Nothing is asserted; no database is needed.
"""

from __future__ import annotations

import argparse
import json
import time

import orjson

from bench.ingest import bulk_body, reading_json
from joulepoint.platform.jsonbody import _refuse_duplicates, json_loads_strict


def per_call_us(function, body: bytes, rounds: int) -> float:
    best = float("inf")
    for _ in range(5):  # best of five: the machine is shared
        start = time.perf_counter()
        for _ in range(rounds):
            function(body)
        best = min(best, (time.perf_counter() - start) / rounds)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2000, help="single-reading parses per timing (bulk: /100)")
    args = parser.parse_args(argv)
    single = orjson.dumps(reading_json(1))
    bulk = bulk_body(0, 1000)
    escaped = bulk.replace(b'"timestamp"', b'"timest\\u0061mp"', 1)

    def hooked(body: bytes) -> object:
        return json.loads(body, object_pairs_hook=_refuse_duplicates)

    print(f"{'body':<24}{'orjson µs':>12}{'strict µs':>12}{'ratio':>8}{'json+hook µs':>15}")
    for label, body, rounds in (
        ("single reading", single, args.rounds),
        ("bulk of 1,000", bulk, max(args.rounds // 100, 5)),
        ("bulk, one \\u escape", escaped, max(args.rounds // 100, 5)),
    ):
        base = per_call_us(orjson.loads, body, rounds)
        strict = per_call_us(json_loads_strict, body, rounds)
        slow = per_call_us(hooked, body, rounds)
        print(f"{label:<24}{base:>12.1f}{strict:>12.1f}{strict / base:>8.2f}{slow:>15.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
