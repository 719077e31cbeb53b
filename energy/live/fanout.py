"""Fan-out of bus events to Channels groups, where dashboards (energy.consumers.LiveConsumer)
and open ingest sockets (downlink) listen.

Groups are per site (`live.o<org>.s<site>`) and per organization (`live.o<org>`, events that
name no site); a dashboard joins the groups of the sites it watches and filters by meter
itself, so a batch of readings costs one group send per site, whatever the number of meters.
The organization id is part of every group name: a socket only ever joins groups of the
organizations it authenticated for.
"""

from __future__ import annotations

import logging
import uuid

import orjson
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from joulepoint.events.types import (
    ALERT_TRIGGERED,
    ANOMALY_DETECTED,
    DATA_INGESTED,
    DEMAND_RESPONSE,
    PEAK_DETECTED,
    PQ_EVENT,
    PROTECTION_EVENT,
    Event,
)

logger = logging.getLogger(__name__)

# Keys a dashboard sees. wallet.low_balance and ml.inference stay server-side.
LIVE_EVENT_KEYS = frozenset(
    {DATA_INGESTED, PQ_EVENT, PROTECTION_EVENT, ALERT_TRIGGERED, ANOMALY_DETECTED, DEMAND_RESPONSE, PEAK_DETECTED}
)
# Never forwarded to browsers: a device key is a credential.
PRIVATE_PAYLOAD_KEYS = frozenset({"device_key", "device_secret"})


def site_group(org_id: int, site_id: int) -> str:
    return f"live.o{int(org_id)}.s{int(site_id)}"


def org_group(org_id: int) -> str:
    return f"live.o{int(org_id)}"


def device_group(device_key: uuid.UUID | str) -> str:
    """The group an open ingest socket of this device joins to receive downlink commands."""
    return f"downlink.{uuid.UUID(str(device_key)).hex}"


def group_send(group: str, message: dict) -> None:
    """Send to a Channels group from synchronous code (services, tasks, the MQTT bridge).

    Under an ASGI server or the bridge this runs on the process's event loop (asgiref hands
    the coroutine back to it); in a plain thread, such as a Celery worker, on a fresh loop."""
    layer = get_channel_layer()
    if layer is None:
        return
    # The group travels with the message: a server process receives all its groups on one relay
    # channel (energy.live.relay) and routes by it.
    async_to_sync(layer.group_send)(group, {**message, "group": group})


def _public(payload: dict) -> dict:
    return {key: value for key, value in payload.items() if key not in PRIVATE_PAYLOAD_KEYS}


def live_event_fan_out(event: Event) -> None:
    """Bus subscriber: forward a dashboard-visible event to its site's (or organization's) group.

    Best effort: dashboards are a view, so a channel layer outage is logged and never fails the
    ingest that published the event, nor makes the outbox redeliver it to other subscribers."""
    if event.key not in LIVE_EVENT_KEYS:
        return
    try:
        _fan_out(event)
    except Exception:
        logger.exception("live fan-out of %s failed", event.key)


def live_notice_send(
    *, organization_id: int, site_id: int | None, key: str, payload: dict, ident: str, occurred_at
) -> None:
    """Show dashboards something that is not a bus event (rules must not fire on it), e.g. a new
    annotation: the same `event` frame a bus event gets, to the site's group (or the
    organization's). Best effort, like the bus fan-out: a channel-layer outage is logged."""
    message = {
        "type": "live.event",
        "event": {"id": ident, "key": key, "occurred_at": occurred_at.isoformat(), "payload": _public(payload)},
    }
    try:
        if site_id is not None:
            group_send(site_group(organization_id, site_id), message)
        else:
            group_send(org_group(organization_id), message)
    except Exception:
        logger.exception("live notice %s failed", key)


def _fan_out(event: Event) -> None:
    payload = event.payload or {}
    if event.key == DATA_INGESTED:
        site_id = payload.get("site_id")
        if site_id is None:
            return
        readings = payload.get("readings", [])
        # Serialized once here rather than once per dashboard: a site subscriber forwards the
        # text as is; a meter subscriber looks at `meter_ids` before parsing anything.
        frame = orjson.dumps({"type": "readings", "site_id": site_id, "readings": readings}).decode()
        meter_ids = sorted({reading["meter_id"] for reading in readings})
        message = {"type": "live.readings", "site_id": site_id, "meter_ids": meter_ids, "frame": frame}
        group_send(site_group(event.organization_id, site_id), message)
        return
    message = {
        "type": "live.event",
        "event": {
            "id": str(event.id),
            "key": event.key,
            "occurred_at": event.occurred_at.isoformat(),
            "payload": _public(payload),
        },
    }
    site_id = payload.get("site_id")
    if site_id is not None:
        group_send(site_group(event.organization_id, site_id), message)
    else:
        group_send(org_group(event.organization_id), message)
