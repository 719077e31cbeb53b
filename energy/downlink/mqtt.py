"""MQTT topics and connection settings shared by the bridge and the downlink.

Topics (prefix `MQTT_TOPIC_PREFIX`, default `joulepoint`) name a device by its MQTT id,
`meter-<id>` or `gateway-<id>`, which is also its MQTT username (docs/live.md, "MQTT identity"):
  <prefix>/<mqtt_id>/readings   device → platform, QoS 1
  <prefix>/<mqtt_id>/ack        platform → device: one ack or error per readings message
  <prefix>/<mqtt_id>/commands   platform → device: downlink commands, QoS 1
The id is not a secret: anyone who can subscribe learns nothing that authenticates. The device
key used to be the topic segment; `MQTT_LEGACY_KEY_TOPICS` keeps that form working for one
release (deprecated: a subscriber to `#` on a broker without ACLs learns every key).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
from django.conf import settings


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def broker_address(url: str | None = None) -> BrokerAddress:
    """Parse `mqtt://[user:pass@]host[:port]` (or `mqtts://`) from the argument or MQTT_URL."""
    url = url or settings.MQTT_URL
    if not url:
        raise ValueError("MQTT_URL is not set")
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts", "tcp"}:
        raise ValueError(f"MQTT_URL must start with mqtt:// or mqtts://, not {parts.scheme!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=parts.username,
        password=parts.password,
    )


DEVICE_KINDS = ("meter", "gateway")


def device_mqtt_id(device) -> str:
    """A meter's or gateway's MQTT id and username: `meter-<pk>` / `gateway-<pk>` (the two
    tables number their rows independently, so the kind is part of the id)."""
    return device.mqtt_username


def mqtt_id_parse(segment: str) -> tuple[str, int] | None:
    """(kind, pk) of an MQTT id, or None when the segment is not one."""
    kind, _, number = segment.partition("-")
    if kind not in DEVICE_KINDS or not number.isascii() or not number.isdigit() or len(number) > 18:
        return None
    return kind, int(number)


def topic(segment: uuid.UUID | str, kind: str) -> str:
    """The topic of a device's MQTT id (or, legacy, its key) and a kind (readings, ack, commands)."""
    return f"{settings.MQTT_TOPIC_PREFIX}/{segment}/{kind}"


def device_topics(device, kind: str) -> list[str]:
    """Where the platform publishes to a device: its id topic, and its key topic while the
    legacy form is on."""
    names = [topic(device_mqtt_id(device), kind)]
    if settings.MQTT_LEGACY_KEY_TOPICS:
        names.append(topic(device.device_key, kind))
    return names


def readings_subscription() -> str:
    return f"{settings.MQTT_TOPIC_PREFIX}/+/readings"


def device_segment_from_topic(name: str) -> str | None:
    """The device segment (MQTT id, or legacy key) of `<prefix>/<segment>/readings`, or None for
    any other topic."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != settings.MQTT_TOPIC_PREFIX or parts[2] != "readings":
        return None
    return parts[1]


def mqtt_publish(*, topic_name: str, payload: dict, qos: int = 1, url: str | None = None) -> None:
    """Publish one message and wait for the broker's PUBACK (connect, publish, disconnect).

    Used for downlink from web and worker processes, which hold no MQTT connection; raises
    OSError when the broker cannot be reached."""
    from paho.mqtt import publish

    address = broker_address(url)
    auth = {"username": address.username, "password": address.password} if address.username else None
    publish.single(
        topic_name,
        payload=orjson.dumps(payload),
        qos=qos,
        hostname=address.host,
        port=address.port,
        auth=auth,
        tls={} if address.tls else None,
        client_id=f"joulepoint-downlink-{uuid.uuid4().hex[:12]}",
        keepalive=10,
    )
