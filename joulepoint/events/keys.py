"""The registry of event keys. The bus knows no domain: each app declares the keys it publishes
from its AppConfig.ready() (`event_key_register`), and `publish()` refuses any other key, so a
typo cannot announce something no rule or dashboard will ever hear.

A key is transient when losing it with a crashed process is acceptable (the high-volume
telemetry event, whose readings are stored anyway); every other key is written to the outbox in
the publishing transaction and delivered at least once.
"""

from __future__ import annotations

_transient: dict[str, bool] = {}


def event_key_register(key: str, *, transient: bool = False) -> str:
    """Declare a key an app publishes. Idempotent; a second declaration must agree."""
    if not key or key != key.strip():
        raise ValueError(f"invalid event key {key!r}")
    known = _transient.setdefault(key, transient)
    if known != transient:
        raise ValueError(f"event key {key!r} is already registered with transient={known}")
    return key


def event_keys() -> frozenset[str]:
    """Every registered key (complete once all apps are ready)."""
    return frozenset(_transient)


def event_key_require(key: str) -> None:
    if key not in _transient:
        raise ValueError(f"unknown event key {key!r}")


def event_key_is_transient(key: str) -> bool:
    return _transient.get(key, False)
