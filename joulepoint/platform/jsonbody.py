"""Strict JSON for request bodies and device frames: duplicate keys and non-UTF-8 charsets refused.

JSON (RFC 8259) says names "SHOULD be unique" and leaves duplicates to the parser; orjson, like
Python's json, keeps the last one silently, so `{"total_power": 1, "total_power": 9e9}` would be
stored as whatever the last writer meant. We refuse it instead (400 naming the key).

No maintained parser refuses duplicates at orjson's speed (orjson and msgspec have no option
for it; Python's json needs an `object_pairs_hook`, several times slower), so the hot path is
orjson plus a cheap count and the slow hook runs only when the count says there may be one:
in valid JSON every object member is followed by exactly one structural `:`, so the body's `:`
bytes are the members written plus the `:` inside strings. Writing the parsed value back
(orjson.dumps) gives one `:` per member kept plus the `:` of the strings kept. When no string of
the body holds a `\\u` escape (`\\u003a` is a `:` the bytes do not show), the two counts are
equal exactly when no member was dropped, i.e. when no object named a key twice: a dropped
member takes its own `:` with it. Any doubt (an escape, a mismatch) takes the exact path.
"""

from __future__ import annotations

import json

import orjson

UTF8_CHARSETS = frozenset({"utf-8", "utf8"})


class DuplicateKey(ValueError):
    """A JSON object names the same member twice."""

    def __init__(self, key: str):
        super().__init__(f"Duplicate key {key!r} in a JSON object: each name may appear once.")
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def duplicate_keys_check(raw: bytes, parsed: object) -> None:
    """Raise DuplicateKey when `raw` (which parsed to `parsed`) names a member twice in an object."""
    # orjson writes the parsed value back with one `:` per member kept and every `:` of its
    # strings as is, in C, faster than a walk of the value in Python.
    if b"\\u" not in raw and raw.count(b":") == orjson.dumps(parsed).count(b":"):
        return
    # The exact (slow) path: Python's parser tells us every object's pairs in order.
    json.loads(raw, object_pairs_hook=_refuse_duplicates)


def json_loads_strict(raw: bytes | str) -> object:
    """orjson.loads, refusing duplicate keys (DuplicateKey, a ValueError); raises
    orjson.JSONDecodeError for malformed JSON, as orjson.loads does."""
    if isinstance(raw, str):
        raw = raw.encode()
    parsed = orjson.loads(raw)
    duplicate_keys_check(raw, parsed)
    return parsed


def charset_is_utf8(content_type: str) -> bool:
    """True when a Content-Type names no charset or UTF-8 (the only encoding JSON allows, RFC 8259 §8.1)."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() in UTF8_CHARSETS
    return True
