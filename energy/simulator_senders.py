"""How the simulator's readings reach the platform: over HTTP, each meter posting with its device
key and an HMAC signature (keeping a backlog while the server is away), or over MQTT, each meter
logged in to the broker as itself; `SplitSender` sends some meters one way and the rest the
other. The readings themselves come from energy.simulator."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
from collections import deque
from dataclasses import dataclass

import httpx
import orjson

logger = logging.getLogger("energy.simulator")


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class MeterCredential:
    id: int
    kind: str
    device_key: str
    device_secret: str
    name: str = ""


@dataclass
class PostResult:
    sent: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0
    pending: int = 0
    error: str | None = None
    retry_after: float | None = None

    def add(self, other: PostResult) -> None:
        """Count `other` in (a meter's or a sender's share of one tick): the first error, the
        longest retry-after."""
        self.sent += other.sent
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dropped += other.dropped
        self.pending += other.pending
        self.error = self.error or other.error
        if other.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, other.retry_after)


class ReadingSender:
    """Posts each meter's readings with its key and an HMAC signature; keeps what could not be
    sent (server down, 5xx, 429) and sends the backlog in one bulk request when it can."""

    BULK_PATH = "/api/energy/energy-data/bulk"
    SINGLE_PATH = "/api/energy/energy-data/"

    def __init__(self, base_url: str, meters: list[MeterCredential], *, client: httpx.Client | None = None,
                 max_backlog: int = 5000, timeout: float = 10.0):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.meters = {meter.kind: meter for meter in meters}
        self.client = client or httpx.Client(timeout=timeout)
        self.backlog: dict[str, deque[dict]] = {kind: deque(maxlen=max_backlog) for kind in self.meters}
        self.server_down = False
        self.connected = False  # has the server ever answered?

    def close(self) -> None:
        self.client.close()

    def send(self, readings: dict[str, dict]) -> PostResult:
        """Queue one reading per meter and try to send every meter's backlog."""
        total = PostResult()
        for kind, reading in readings.items():
            if kind in self.backlog:
                self.backlog[kind].append(reading)
        for kind, meter in self.meters.items():
            result = self._flush(meter, self.backlog[kind])
            total.add(result)
            if result.error and result.retry_after is None and self.server_down:
                break  # the server is unreachable: don't wait on a timeout per meter
        total.pending = sum(len(queue) for queue in self.backlog.values())
        return total

    def _flush(self, meter: MeterCredential, queue: deque[dict]) -> PostResult:
        if not queue:
            return PostResult()
        batch = list(queue)[:1000]
        single = len(batch) == 1
        body = orjson.dumps(batch[0] if single else batch)
        headers = {
            "Content-Type": "application/json",
            "X-Device-Key": meter.device_key,
            "X-Signature": signature(meter.device_secret, body),
        }
        url = self.base_url + (self.SINGLE_PATH if single else self.BULK_PATH)
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            if not self.connected:
                # Started beside the server (make run): it may still be booting.
                logger.info("waiting for the server at %s (%s)", self.base_url, exc)
            elif not self.server_down:
                logger.warning("server unreachable at %s (%s); keeping readings and retrying", self.base_url, exc)
            self.server_down = True
            return PostResult(error=f"{type(exc).__name__}: {exc}")
        if self.server_down and self.connected:
            logger.warning("server is back at %s", self.base_url)
        self.server_down = False
        self.connected = True
        status = response.status_code
        if status in (200, 201):
            for _ in batch:
                queue.popleft()
            payload = response.json()
            if single:
                duplicate = bool(payload.get("duplicate")) or status == 200
                return PostResult(sent=1, stored=0 if duplicate else 1, duplicates=1 if duplicate else 0)
            return PostResult(sent=len(batch), stored=payload.get("stored", 0), duplicates=payload.get("duplicates", 0))
        detail = response.text[:500]
        if status == 429:
            retry_after = float(response.headers.get("Retry-After") or 5)
            logger.warning("meter %s rate limited; retrying in %.0f s", meter.kind, retry_after)
            return PostResult(error="429", retry_after=retry_after)
        if status >= 500:
            logger.warning("server error %s for meter %s; keeping readings: %s", status, meter.kind, detail)
            return PostResult(error=str(status))
        # 4xx: resending the same body cannot succeed; drop it and say why.
        for _ in batch:
            queue.popleft()
        hint = " (were the device keys rotated? rerun `manage.py demo_setup`)" if status in (401, 403) else ""
        logger.error("meter %s: %s rejected %d reading(s)%s: %s", meter.kind, status, len(batch), hint, detail)
        return PostResult(dropped=len(batch), error=str(status))


class MqttReadingSender:
    """Publishes each meter's readings over MQTT as a device does: logged in as its MQTT id
    (`meter-<id>`) with its device key, on `<prefix>/meter-<id>/readings` at QoS 1, and reading
    its own `…/ack` topic for what was stored (docs/live.md, "MQTT identity"). Readings wait in
    a backlog while a meter is not logged in (broker down, login refused) and go out once it is."""

    def __init__(self, url: str, meters: list[MeterCredential], *, prefix: str = "joulepoint",
                 max_backlog: int = 5000, connect_timeout: float = 5.0):  # fmt: skip
        from urllib.parse import urlsplit

        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        self.prefix = prefix
        self.meters = {meter.kind: meter for meter in meters}
        self.acks: deque[dict] = deque()  # appended by paho's network threads
        self.backlog: dict[str, deque[dict]] = {m.kind: deque(maxlen=max_backlog) for m in meters}
        self.in_flight: list = []  # paho's MQTTMessageInfo of publishes not yet acknowledged
        self.refused: set[str] = set()  # logins the broker turned away
        self.clients = {}
        for meter in meters:
            login = f"meter-{meter.id}"
            # A client id of its own per run: a second simulator must not take this one's session over.
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2,
                client_id=f"sim-{login}-{random.getrandbits(32):08x}",
                protocol=mqtt.MQTTv5,
            )
            client.username_pw_set(login, meter.device_key)
            if parts.scheme == "mqtts":
                client.tls_set()
            client.reconnect_delay_set(1, 10)
            client.on_connect = self._on_connect(login)
            client.on_message = lambda c, u, message: self.acks.append(orjson.loads(message.payload))
            client.connect_async(parts.hostname or "127.0.0.1", parts.port or 1883)
            client.loop_start()
            self.clients[meter.kind] = client
        self._wait_for_logins(connect_timeout)

    def _wait_for_logins(self, timeout: float) -> None:
        """Until every meter is logged in or refused (the first tick, or --once, finds them ready);
        a broker still down is no error: readings wait in the backlog."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            not client.is_connected() and f"meter-{self.meters[kind].id}" not in self.refused
            for kind, client in self.clients.items()
        ):
            time.sleep(0.05)

    def _on_connect(self, login: str):
        def on_connect(client, userdata, flags, reason_code, properties) -> None:
            if reason_code.is_failure:
                # A refused login (a rotated key): paho retries, the log says why.
                logger.error("MQTT login %s refused: %s (were the device keys rotated?)", login, reason_code)
                self.refused.add(login)
                return
            self.refused.discard(login)
            client.subscribe(f"{self.prefix}/{login}/ack", qos=1)

        return on_connect

    def send(self, readings: dict[str, dict]) -> PostResult:
        """Publish one reading per meter; `stored`/`duplicates` count the acks arrived since."""
        result = PostResult()
        for kind, reading in readings.items():
            if kind in self.backlog:
                self.backlog[kind].append(reading)
        for kind, meter in self.meters.items():
            client, queue = self.clients[kind], self.backlog[kind]
            topic = f"{self.prefix}/meter-{meter.id}/readings"
            while queue and client.is_connected():
                # Once handed to paho at QoS 1, a message outlives a short disconnect (resent on reconnect).
                self.in_flight.append(client.publish(topic, orjson.dumps(queue.popleft()), qos=1))
                result.sent += 1
        result.pending = sum(len(queue) for queue in self.backlog.values())
        self.in_flight = [info for info in self.in_flight if not _published(info)]
        while self.acks:
            ack = self.acks.popleft()
            result.stored += ack.get("stored", 0)
            result.duplicates += ack.get("duplicates", 0)
            if ack.get("type") == "error":
                result.dropped += 1
                result.error = result.error or f"{ack.get('code')}: {ack.get('detail')}"
                logger.error("MQTT reading refused: %s", ack)
        return result

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect once the broker has what was published (a few seconds at most)."""
        for info in self.in_flight:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the connection was lost meanwhile
                continue
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


def _published(info) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # published while the connection was going: paho resends it
        return False


class SplitSender:
    """The HTTP sender for some meters and the MQTT sender for the others, summed per tick."""

    def __init__(self, *senders):
        self.senders = senders

    def send(self, readings: dict[str, dict]) -> PostResult:
        total = PostResult()
        for sender in self.senders:
            total.add(sender.send({kind: r for kind, r in readings.items() if kind in sender.meters}))
        return total

    def close(self) -> None:
        for sender in self.senders:
            sender.close()
