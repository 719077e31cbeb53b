"""What rules judge: the JsonLogic `event` object of each sub-event of a bus event (templates see
the same object, through templating.template_context)."""

from __future__ import annotations

from energy.events import DATA_INGESTED
from joulepoint.events.types import Event
from joulepoint.platform.timefmt import isoz


def event_contexts(event: Event) -> list[tuple[str, dict]]:
    """(sub-event id, the JsonLogic `event` object) for each thing a rule judges: each reading of a
    `data.ingested` batch, or the event itself."""
    occurred_at = isoz(event.occurred_at)
    payload = event.payload
    if event.key == DATA_INGESTED:
        return [
            (
                f"{event.id}:{index}",
                {**reading, "key": event.key, "occurred_at": occurred_at},
            )
            for index, reading in enumerate(payload.get("readings", []))
        ]
    context = {
        **payload,
        "key": event.key,
        "meter_id": payload.get("meter_id"),
        "site_id": payload.get("site_id"),
        "occurred_at": occurred_at,
    }
    return [(str(event.id), context)]
