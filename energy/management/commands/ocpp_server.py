"""`python manage.py ocpp_server`: the OCPP 2.0.1 CSMS endpoint chargers connect to (docs/load.md, "OCPP")."""

from __future__ import annotations

import contextlib
import logging

from django.core.management.base import BaseCommand

from energy.load.ocpp.server import ocpp_server_run


class Command(BaseCommand):
    help = "Serve ws://HOST:PORT/ocpp/{charging_station_id} (OCPP 2.0.1, HTTP Basic auth) for the chargers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8180)
        parser.add_argument(
            "--poll-seconds", type=float, default=1.0, help="how often pending ocpp.* commands are looked for"
        )
        parser.add_argument(
            "--response-timeout", type=float, default=30.0, help="seconds a station has to answer a CALL"
        )

    def handle(self, *args, **options) -> None:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("ocpp").setLevel(logging.WARNING)  # the package logs every frame at INFO
        self.stdout.write(f"OCPP server: ws://{options['host']}:{options['port']}/ocpp/{{charging_station_id}}")
        self.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            ocpp_server_run(
                host=options["host"],
                port=options["port"],
                poll_seconds=options["poll_seconds"],
                response_timeout=options["response_timeout"],
            )
