"""MQTT topics and connection settings shared by the bridge and the downlink.

Topics (prefix `MQTT_TOPIC_PREFIX`, default `joulepoint`):
  <prefix>/<device_key>/readings   device → platform, QoS 1
  <prefix>/<device_key>/ack        platform → device: one ack or error per readings message
  <prefix>/<device_key>/commands   platform → device: downlink commands, QoS 1
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


def topic(device_key: uuid.UUID | str, kind: str) -> str:
    return f"{settings.MQTT_TOPIC_PREFIX}/{device_key}/{kind}"


def readings_subscription() -> str:
    return f"{settings.MQTT_TOPIC_PREFIX}/+/readings"


def device_key_from_topic(name: str) -> str | None:
    """The device key segment of `<prefix>/<key>/readings`, or None for any other topic."""
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
