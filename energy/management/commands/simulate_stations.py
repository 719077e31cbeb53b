"""`python manage.py simulate_stations`: simulated OCPP 2.0.1 charging stations (energy.load.ocpp.simulator)
that connect to the OCPP server, start charging and follow its charging profiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal

from django.core.management.base import BaseCommand, CommandError

from energy.demo import demo_state_path
from energy.load.ocpp.simulator import station_simulate


class Command(BaseCommand):
    help = "Run simulated charging stations against ws://…/ocpp (the demo's from var/demo.json, or --station)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=None, help="ws://HOST:PORT/ocpp (default: the demo's)")
        parser.add_argument("--demo", action="store_true", help="the demo's stations from var/demo.json")
        parser.add_argument(
            "--station", action="append", default=[], metavar="ID:PASSWORD", help="a station to run (repeatable)"
        )
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between MeterValues")
        parser.add_argument("--stop-with-parent", action="store_true", help="exit when the parent process is gone")

    def handle(self, *args, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("ocpp").setLevel(logging.WARNING)
        url = options["url"]
        stations = []
        if options["demo"]:
            state = json.loads(demo_state_path().read_text()).get("ocpp") or {}
            url = url or state.get("url")
            stations += [(s["charging_station_id"], s["password"]) for s in state.get("stations", [])]
        for item in options["station"]:
            station_id, colon, password = item.partition(":")
            if not colon:
                raise CommandError(f"--station takes ID:PASSWORD, not {item!r}")
            stations.append((station_id, password))
        if not url or not stations:
            raise CommandError("Give --demo (after `manage.py demo_setup`) or --url and --station ID:PASSWORD.")
        self.stdout.write(f"Simulating {len(stations)} charging station(s) against {url}")
        self.stdout.flush()
        asyncio.run(self._run(url, stations, options["interval"], options["stop_with_parent"]))

    async def _run(self, url: str, stations: list[tuple[str, str]], interval: float, stop_with_parent: bool):
        tasks = [
            asyncio.create_task(station_simulate(url, station_id, password, interval=interval))
            for station_id, password in stations
        ]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        parent = os.getppid()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2)
            if stop_with_parent and os.getppid() != parent:
                break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
