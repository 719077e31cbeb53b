"""The event bus: `publish()` is the one way anything announces something.

Imported lazily so `from joulepoint.events import publish` works before apps are ready.
"""

from __future__ import annotations

from typing import Any


def publish(org: Any, key: str, payload: dict, *, source: str, occurred_at: Any = None) -> Any:
    from joulepoint.events.services import event_publish

    return event_publish(org=org, key=key, payload=payload, source=source, occurred_at=occurred_at)
