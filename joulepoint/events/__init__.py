"""The event bus: `publish()` is the one way anything announces something.

Imported lazily so `from joulepoint.events import publish` works before apps are ready.
"""

from __future__ import annotations

from typing import Any


def publish(org: Any, key: str, payload: dict, *, source: str, occurred_at: Any = None) -> Any:
    from joulepoint.events.services import event_publish

    return event_publish(org=org, key=key, payload=payload, source=source, occurred_at=occurred_at)


def publish_many(events: list[tuple[Any, str, dict, Any]], *, source: str) -> list[Any]:
    """Several events of one cause: (org, key, payload, occurred_at) each, one outbox INSERT."""
    from joulepoint.events.services import event_publish_many

    return event_publish_many(events=events, source=source)
