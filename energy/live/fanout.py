"""Fan-out of bus events to Channels groups, where dashboards (energy.live.consumers.LiveConsumer)
and open ingest sockets (downlink) listen.

Groups are per site (`live.o<org>.s<site>`) and per organization (`live.o<org>`, events that
name no site); a dashboard joins the groups of the sites it watches and filters by meter
itself, so a batch of readings costs one group send per site, whatever the number of meters.
The organization id is part of every group name: a socket only ever joins groups of the
organizations it authenticated for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid

import orjson
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from energy.events import DATA_INGESTED, DEMAND_RESPONSE, PEAK_DETECTED, PQ_EVENT, PROTECTION_EVENT
from energy.live.inbox import LoopInbox
from joulepoint.events.listeners import listener_answer, listeners_changed
from joulepoint.events.types import Event

logger = logging.getLogger(__name__)

# Keys a dashboard sees. Two are other apps' (automations, mlops), named by their wire value:
# energy imports neither. wallet.low_balance and ml.inference stay server-side.
ALERT_TRIGGERED = "alert.triggered"
ANOMALY_DETECTED = "anomaly.detected"
LIVE_EVENT_KEYS = frozenset(
    {DATA_INGESTED, PQ_EVENT, PROTECTION_EVENT, ALERT_TRIGGERED, ANOMALY_DETECTED, DEMAND_RESPONSE, PEAK_DETECTED}
)
# Never forwarded to browsers: a device key is a credential.
PRIVATE_PAYLOAD_KEYS = frozenset({"device_key", "device_secret"})


def site_group(org_id: int, site_id: int) -> str:
    return f"live.o{int(org_id)}.s{int(site_id)}"


def org_group(org_id: int) -> str:
    return f"live.o{int(org_id)}"


def token_group(token_checksum: str) -> str:
    """The group a dashboard socket opened with an OAuth2 token joins, to hear of its revocation."""
    return f"live.token.{token_checksum[:64]}"


def access_token_revoked(sender, instance, **kwargs) -> None:
    """post_delete receiver of DOT's AccessToken (energy.apps): revoking a token (POST
    /o/revoke_token/, a narrowed credential, a refresh) deletes it; the sockets it opened close
    (4401) once that commits, not at their next periodic check."""
    group = token_group(instance.token_checksum)
    transaction.on_commit(lambda: group_send(group, {"type": "live.token_revoked"}))


def device_group(device_key: uuid.UUID | str) -> str:
    """The group an open ingest socket of this device joins to receive downlink commands."""
    return f"downlink.{uuid.UUID(str(device_key)).hex}"


SENDER_QUEUE_SIZE = 10_000
# Readings of consecutive queued batches for one site travel as one frame up to this many.
COALESCE_MAX_READINGS = 5_000


class _Sender:
    """A daemon thread with its own event loop that sends to Redis channel-layer groups for
    synchronous code (request threads, Celery tasks, the MQTT bridge's ingest thread).

    asgiref's async_to_sync from a thread with no outer event loop starts a thread and a loop
    per call, and channels_redis opens a connection per loop: milliseconds a send, paid by the
    request that stored the readings. Here the caller only queues the message; one long-lived
    loop keeps its connections and sends in queue order, so dashboards see frames in the order
    they were stored. Created on first use in each process (Celery's prefork children included).

    Readings batches queued back to back for the same site leave as one `readings` frame: the
    MQTT bridge and the HTTP group commit (energy.services.reading_batch_ingest_grouped) commit
    many devices' batches at once, and one frame per device would cost a Redis send and a
    browser frame each.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        # Submitted by other threads; under load many submits share one wake-up of the loop.
        self.inbox: LoopInbox[tuple[str, dict]] = LoopInbox(self.loop, maxlen=SENDER_QUEUE_SIZE)
        self.dropped = 0
        thread = threading.Thread(target=self._serve, name="live-fanout-sender", daemon=True)
        thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        layer = get_channel_layer()
        while True:
            for group, message in _coalesced(await self.inbox.take()):
                try:
                    await layer.group_send(group, message)
                except Exception:
                    logger.exception("live fan-out to %s failed", group)

    def submit(self, group: str, message: dict) -> None:
        if not self.inbox.put((group, message)):
            # Best effort, like the fan-out itself: a channel layer that stopped answering must not
            # grow this process without bound.
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning("live fan-out queue full; %d messages dropped so far", self.dropped)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _process_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _Sender()
        return _sender


def _coalesced(queued: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Queued (group, message) pairs in order, with runs of readings for the same group merged
    and every readings message in its wire form."""
    out: list[tuple[str, dict]] = []
    run: list = []  # [group, site_id, readings] of the readings run being merged
    for group, message in queued:
        readings = message.get("readings") if message["type"] == "live.readings" else None
        if readings is not None and run and run[0] == group and len(run[2]) + len(readings) <= COALESCE_MAX_READINGS:
            run[2].extend(readings)
            continue
        if run:
            out.append((run[0], _readings_wire(*run)))
            run = []
        if readings is not None:
            run = [group, message["site_id"], list(readings)]
        else:
            out.append((group, message))
    if run:
        out.append((run[0], _readings_wire(*run)))
    return out


def _readings_wire(group: str, site_id: int, readings: list[dict]) -> dict:
    """A site's readings as relays receive them: the dashboard frame serialized once here rather
    than once per dashboard (a site subscriber forwards the text as is; a meter subscriber looks
    at `meter_ids` before parsing anything)."""
    frame = orjson.dumps({"type": "readings", "site_id": site_id, "readings": readings}).decode()
    meter_ids = sorted({reading["meter_id"] for reading in readings})
    return {"type": "live.readings", "site_id": site_id, "meter_ids": meter_ids, "frame": frame, "group": group}


# Synchronous clients of the channel layer's Redis hosts, by address, for `_group_is_empty`.
_membership_clients: dict[str, redis.Redis] = {}
# A Redis that stopped answering costs the writer this long at most; the send is then skipped.
MEMBERSHIP_TIMEOUT_SECONDS = 0.5


def _group_is_empty(layer, group: str) -> bool:
    """Whether a channels_redis layer holds no member of `group`: one EXISTS on the group's own
    sorted set, which the layer's group_add creates and its group_discard empties.

    Most sites have no dashboard open most of the time, and a group send to nobody still cost
    the sender thread a wake-up and two Redis round trips per ingest group (a large share of a
    single reading's CPU). A member that joins after this check would also
    have missed the send itself. Hosts given otherwise than by address are always sent to.

    The answer is kept by the process while the listeners' epoch stands: whoever joins or
    leaves a group (`group_join`, `group_leave`) moves the epoch.
    """
    host = layer.hosts[layer.consistent_hash(group)]
    address = host.get("address") if isinstance(host, dict) else None
    if not isinstance(address, str):
        return False
    client = _membership_clients.get(address)
    if client is None:
        client = _membership_clients.setdefault(
            address,
            redis.Redis.from_url(
                address, socket_timeout=MEMBERSHIP_TIMEOUT_SECONDS, socket_connect_timeout=MEMBERSHIP_TIMEOUT_SECONDS
            ),
        )
    # channels_redis names the set with its (private) _group_key; tests/energy/live/test_fanout.py
    # checks it against a real group_add, so an upgrade that renames it fails there, not here.
    key = layer._group_key(group)
    try:
        return not listener_answer(("group-members", address, key), lambda: bool(client.exists(key)))
    except redis.RedisError as exc:
        # The send would fail the same way in the sender thread; the writer goes on either way.
        logger.warning("live fan-out to %s skipped: channel layer unreachable (%s)", group, exc)
        return True


async def group_join(layer, group: str, channel: str) -> None:
    """Add `channel` to `group`, then tell every process that the group's members changed (the
    answer `_group_is_empty` keeps)."""
    await layer.group_add(group, channel)
    await sync_to_async(listeners_changed, thread_sensitive=False)()


async def group_leave(layer, group: str, channel: str) -> None:
    await layer.group_discard(group, channel)
    await sync_to_async(listeners_changed, thread_sensitive=False)()


def group_send(group: str, message: dict) -> None:
    """Send to a Channels group from synchronous code (services, tasks, the MQTT bridge), without
    waiting for it: dashboards are a view, and the writer that published must not pay for them
    beyond asking whether anyone listens.

    A Redis layer is reachable from any loop, so the send goes through the process's sender
    thread, unless the group has no member. The in-memory layer (embedded default, tests) lives
    on the server's own loop, where async_to_sync hands the coroutine back to it."""
    layer = get_channel_layer()
    if layer is None:
        return
    # The group travels with the message: a server process receives all its groups on one relay
    # channel (energy.live.relay) and routes by it.
    message = {**message, "group": group}
    if isinstance(layer, InMemoryChannelLayer):
        if message["type"] == "live.readings":
            message = _readings_wire(group, message["site_id"], message["readings"])
        async_to_sync(layer.group_send)(group, message)
    elif not _group_is_empty(layer, group):
        _process_sender().submit(group, message)


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
    try:
        _event_frame_send(
            organization_id=organization_id,
            site_id=site_id,
            ident=ident,
            key=key,
            occurred_at=occurred_at,
            payload=payload,
        )
    except Exception:
        logger.exception("live notice %s failed", key)


def _event_frame_send(
    *, organization_id: int, site_id: int | None, ident: str, key: str, occurred_at, payload: dict
) -> None:
    """The `event` frame, to the site's group when the payload names a site, else the organization's."""
    message = {
        "type": "live.event",
        "event": {"id": ident, "key": key, "occurred_at": occurred_at.isoformat(), "payload": _public(payload)},
    }
    if site_id is not None:
        group_send(site_group(organization_id, site_id), message)
    else:
        group_send(org_group(organization_id), message)


def _fan_out(event: Event) -> None:
    payload = event.payload or {}
    if event.key == DATA_INGESTED:
        site_id = payload.get("site_id")
        if site_id is None:
            return
        message = {"type": "live.readings", "site_id": site_id, "readings": payload.get("readings", [])}
        group_send(site_group(event.organization_id, site_id), message)
        return
    _event_frame_send(
        organization_id=event.organization_id,
        site_id=payload.get("site_id"),
        ident=str(event.id),
        key=event.key,
        occurred_at=event.occurred_at,
        payload=payload,
    )
