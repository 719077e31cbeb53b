"""The MQTT bridge: `<prefix>/<mqtt_id>/readings` in, the ingest service, `<prefix>/<mqtt_id>/ack` out.

Delivery guarantee: the bridge subscribes with QoS 1 in a persistent session (MQTT 5,
clean_start off, session kept for a day) and acknowledges each PUBLISH to the broker (PUBACK,
paho's manual_ack) only after the batch holding it has committed and its answer has been
published. A crash or a broker restart before that makes the broker deliver it again; the
unique (meter, timestamp) of a reading turns the repeat into a duplicate, never a second row.

Throughput: messages that arrive while a batch is being stored are taken together, validated
per device (`readings_prepare`) and stored together (`readings_store`: one INSERT, one
detection pass, one commit, one `data.ingested` per device), so the cost per message falls as
the load rises. One bad message does not sink its neighbours: it gets its own error answer and
the rest of its device's messages are stored.

Threads: paho's network thread hands messages to an asyncio loop, which batches them, stores
each batch on one worker thread (sync_to_async, thread_sensitive: one long-lived database
connection) and publishes the answers; the dashboards' fan-out leaves through the process's
fan-out sender (energy.live.fanout).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction

from energy.downlink import mqtt as topics
from energy.ingest import store
from energy.ingest.frames import Frame, FrameError, ack_frame, frame_decode, frame_loads, invalid_frame
from energy.ingest.validation import ReadingsInvalid
from energy.live.inbox import LoopInbox
from energy.models import Gateway, Meter
from joulepoint.audit.middleware import audit_door

logger = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 24 * 3600


@dataclass
class Incoming:
    """One readings message as taken off the wire."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1


@dataclass
class _Pending:
    index: int
    device: Meter | Gateway
    frame: Frame
    answer: dict | None = None


@dataclass
class _DeviceFrames:
    """One device's frames prepared as one batch; `spans` are each frame's items in it."""

    frames: list[_Pending]
    batch: store.PreparedReadings
    spans: list[tuple[int, int]]


@dataclass
class Answer:
    incoming: Incoming
    device_key: str | None  # the topic's device segment: an MQTT id (or, legacy, a key)
    frame: dict = field(default_factory=dict)


def _devices_by_segment(segments: set[str]) -> dict[str, Meter | Gateway]:
    """Active meters and gateways named by topic segments (MQTT ids, and device keys while
    MQTT_LEGACY_KEY_TOPICS is on), in at most four queries (not one per message)."""
    pks: dict[str, set[int]] = {kind: set() for kind in topics.DEVICE_KINDS}
    keys: set[uuid.UUID] = set()
    for segment in segments:
        if parsed := topics.mqtt_id_parse(segment):
            pks[parsed[0]].add(parsed[1])
        elif settings.MQTT_LEGACY_KEY_TOPICS:
            try:
                keys.add(uuid.UUID(segment))
            except ValueError:
                continue
    found: dict[str, Meter | Gateway] = {}
    for kind, model in (("meter", Meter), ("gateway", Gateway)):
        active = model.objects.select_related("organization").filter(is_active=True)
        if pks[kind]:
            for device in active.filter(pk__in=pks[kind]):
                found[topics.device_mqtt_id(device)] = device
        if keys:
            for device in active.filter(device_key__in=keys):
                found[str(device.device_key)] = device
    return found


def _segment_canonical(segment: str) -> str:
    """A legacy key segment in its canonical form (any UUID spelling names the same device)."""
    if topics.mqtt_id_parse(segment) or not settings.MQTT_LEGACY_KEY_TOPICS:
        return segment
    try:
        return str(uuid.UUID(segment))
    except ValueError:
        return segment


def messages_ingest(messages: list[Incoming]) -> list[Answer]:
    """Store a batch of readings messages; one answer (ack or error frame) per message, in order.

    The device is the one its topic names: the broker's ACL lets a client publish only on its own
    topics (docs/live.md, "MQTT identity"), so the topic is as good as the client's login."""
    answers = [Answer(incoming=m, device_key=topics.device_segment_from_topic(m.topic)) for m in messages]
    canonical = {a.device_key: _segment_canonical(a.device_key) for a in answers if a.device_key}
    devices = _devices_by_segment(set(canonical.values()))
    by_device: dict[str, list[_Pending]] = defaultdict(list)
    for index, answer in enumerate(answers):
        key = canonical.get(answer.device_key) if answer.device_key else None
        device = devices.get(key) if key else None
        if device is None:
            answer.frame = FrameError("unauthenticated", "Unknown or disabled device.").as_frame()
            continue
        try:
            frame = frame_decode(frame_loads(answer.incoming.payload), device=device)
        except FrameError as exc:
            answer.frame = exc.as_frame()
            continue
        # By the device, not the segment: its id and legacy key topics make one batch.
        by_device[topics.device_mqtt_id(device)].append(_Pending(index=index, device=device, frame=frame))
    # Validation per device (frames with invalid readings are answered on their own), then one
    # store for every device: one INSERT, one detection pass, one commit per batch of messages.
    prepared = [ready for pending in by_device.values() if (ready := _device_frames_prepare(pending))]
    if prepared:
        # One transaction stores many devices' readings, so what follows from it in this process
        # (in the embedded mode, a rule's annotation) is the bridge's, not one device's.
        with audit_door(source="mqtt"), transaction.atomic():
            results = store.readings_store(batches=[device.batch for device in prepared], source="mqtt")
        for device, result in zip(prepared, results, strict=True):
            _answer_frames(device, result)
    for pending in by_device.values():
        for item in pending:
            answers[item.index].frame = item.answer
    return answers


def _device_frames_prepare(pending: list[_Pending]) -> _DeviceFrames | None:
    """All frames of one device as one prepared batch.

    Frames with invalid readings are answered on their own and the rest prepared again (at most
    once per bad frame, so the loop is bounded); None when no frame is left."""
    todo = list(pending)
    while todo:
        items: list = []
        spans: list[tuple[int, int]] = []
        for item in todo:
            spans.append((len(items), len(items) + len(item.frame.items)))
            items.extend(item.frame.items)
        try:
            return _DeviceFrames(todo, store.readings_prepare(device=todo[0].device, items=items), spans)
        except ReadingsInvalid as exc:
            bad: dict[int, list] = defaultdict(list)
            for error in exc.errors:
                for position, (start, end) in enumerate(spans):
                    if error.index is not None and start <= error.index < end:
                        bad[position].append({**error.as_dict(), "index": error.index - start})
                        break
            if not bad:  # an error we cannot place: answer every frame with it
                for item in todo:
                    item.answer = invalid_frame(frame_id=item.frame.id, errors=[e.as_dict() for e in exc.errors])
                return None
            for position, errors in bad.items():
                todo[position].answer = invalid_frame(frame_id=todo[position].frame.id, errors=errors)
            todo = [item for position, item in enumerate(todo) if position not in bad]
    return None


def _answer_frames(device: _DeviceFrames, result: store.IngestResult) -> None:
    """Each frame's ack: its readings this batch stored, the rest duplicates."""
    stored = set(result.stored_keys)
    claimed: set = set()
    for item, (start, end) in zip(device.frames, device.spans, strict=True):
        fresh = 0
        for key in result.keys[start:end]:
            if key in stored and key not in claimed:
                claimed.add(key)
                fresh += 1
        item.answer = ack_frame(frame_id=item.frame.id, stored=fresh, duplicates=(end - start) - fresh)


class MqttBridge:
    """Subscribe, batch, ingest, answer, acknowledge; reconnects by itself (paho's loop)."""

    def __init__(
        self,
        *,
        url: str | None = None,
        client_id: str = "joulepoint-bridge",
        batch_max: int = 1000,
        receive_maximum: int = 2000,
        ack_qos: int = 1,
        shared_group: str | None = None,
    ):
        self.address = topics.broker_address(url)
        self.client_id = client_id
        self.batch_max = batch_max
        self.receive_maximum = receive_maximum
        self.ack_qos = ack_qos
        self.subscription = topics.readings_subscription()
        if shared_group:
            # Several bridges share the load; the broker gives each message to one of them.
            self.subscription = f"$share/{shared_group}/{self.subscription}"
        self.stopping = False
        self.processed = 0
        self.connected = asyncio.Event()
        # paho's thread puts, the loop takes in batches (one wake-up per batch, not per message).
        self.inbox: LoopInbox[Incoming] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client = None

    def _make_client(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_queued_messages_set(0)
        # No outgoing window in paho (0): at most one ack per received message is ever in flight
        # anyway, and below its window paho rescans every unacknowledged ack on each PUBACK.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        # Lets the broker keep this many unacknowledged messages in flight to us (mosquitto's
        # max_inflight_messages of 20 applies to MQTT 3 clients only), so batches can grow.
        properties.ReceiveMaximum = self.receive_maximum
        return client, properties

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            logger.warning("MQTT connect refused: %s", reason_code)
            return
        client.subscribe(self.subscription, qos=1)
        logger.warning(
            "MQTT bridge connected to %s:%s, subscribed to %s", self.address.host, self.address.port, self.subscription
        )
        self.loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.stopping:
            logger.warning("MQTT bridge disconnected (%s); reconnecting", reason_code)
        self.loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, client, userdata, message) -> None:
        self.inbox.put(Incoming(topic=message.topic, payload=message.payload, mid=message.mid, qos=message.qos))

    def _process(self, batch: list[Incoming]) -> list[Answer]:
        # One long-lived connection on the one thread that stores (thread_sensitive), whatever
        # CONN_MAX_AGE says for request threads: connecting per batch cost more than the batch's
        # INSERT. After a failure it is dropped, so the retry starts on a fresh connection.
        try:
            return messages_ingest(batch)
        except Exception:
            connection.close()
            raise

    async def run(self, *, max_seconds: float | None = None, install_signals: bool = False) -> None:
        """Serve until stop() (or SIGTERM/SIGINT when install_signals, or max_seconds)."""
        self.loop = asyncio.get_running_loop()
        self.inbox = LoopInbox(self.loop)
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(signum, self.stop)
        client, properties = self._make_client()
        self.client = client
        # Keep the session (and the broker's queue of unacknowledged messages) across restarts.
        client.connect_async(
            self.address.host, self.address.port, keepalive=30, clean_start=False, properties=properties
        )
        client.loop_start()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        process = sync_to_async(self._process, thread_sensitive=True)
        try:
            while not self.stopping and (deadline is None or time.monotonic() < deadline):
                try:
                    batch = await self.inbox.take(limit=self.batch_max, timeout=0.5)
                except TimeoutError:
                    continue
                if not batch:
                    continue
                answers = await self._process_with_retry(process, batch)
                if answers is None:
                    break  # stopping; unacknowledged, so the broker delivers them again
                for answer in answers:
                    if answer.device_key:
                        client.publish(
                            topics.topic(answer.device_key, "ack"), orjson.dumps(answer.frame), qos=self.ack_qos
                        )
                    client.ack(answer.incoming.mid, answer.incoming.qos)
                self.processed += len(answers)
        finally:
            self.stopping = True
            client.disconnect()
            client.loop_stop()

    async def _process_with_retry(self, process, batch: list[Incoming]) -> list[Answer] | None:
        """Store the batch, retrying with backoff while the database is unavailable."""
        delay = 0.5
        while True:
            try:
                return await process(batch)
            except Exception:
                logger.exception("MQTT bridge could not store a batch of %d; retrying in %.1fs", len(batch), delay)
            if self.stopping:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def stop(self) -> None:
        self.stopping = True
