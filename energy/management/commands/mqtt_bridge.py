"""`python manage.py mqtt_bridge`: MQTT readings in through the ingest service, acks out (docs/live.md)."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from energy.ingest.mqtt_bridge import MqttBridge


class Command(BaseCommand):
    help = "Bridge MQTT (<prefix>/<mqtt_id>/readings) to the ingest service; acks on <prefix>/<mqtt_id>/ack."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=None, help="mqtt://host:port (default: MQTT_URL)")
        parser.add_argument("--client-id", default="joulepoint-bridge", help="MQTT client id; the session is kept")
        parser.add_argument("--batch-max", type=int, default=1000, help="messages stored per batch at most")
        parser.add_argument("--receive-maximum", type=int, default=2000, help="unacknowledged messages in flight")
        parser.add_argument("--ack-qos", type=int, choices=[0, 1], default=1)
        parser.add_argument("--shared", default=None, help="share the subscription with other bridges ($share/NAME)")
        parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long (tests, bench)")

    def handle(self, *args, **options) -> None:
        url = options["url"] or settings.MQTT_URL
        if not url:
            raise CommandError("Set MQTT_URL (e.g. mqtt://127.0.0.1:1883) or pass --url.")
        bridge = MqttBridge(
            url=url,
            client_id=options["client_id"],
            batch_max=options["batch_max"],
            receive_maximum=options["receive_maximum"],
            ack_qos=options["ack_qos"],
            shared_group=options["shared"],
        )
        address = bridge.address  # printed without the password (it lands in logs)
        login = f"{address.username}@" if address.username else ""
        where = f"{'mqtts' if address.tls else 'mqtt'}://{login}{address.host}:{address.port}"
        self.stdout.write(f"MQTT bridge: {where} as {options['client_id']}", ending="\n")
        self.stdout.flush()
        asyncio.run(bridge.run(max_seconds=options["max_seconds"], install_signals=True))
        self.stdout.write(f"MQTT bridge stopped after {bridge.processed} messages")
