from __future__ import annotations

import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from energy.demo import demo_state_path
from energy.demo_history import simulator_state_path, simulator_state_save
from energy.simulator import DepotSimulator
from energy.simulator_senders import MeterCredential, MqttReadingSender, ReadingSender, SplitSender


class Command(BaseCommand):
    help = (
        "Push realistic readings for the demo depot's five meters to a running server over HTTP, "
        "signed with each meter's device secret. Reads var/demo.json (written by demo_setup)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of the running platform")
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds between readings (default 5)")
        parser.add_argument("--once", action="store_true", help="Send one reading per meter and exit")
        parser.add_argument("--config", default=None, help="Demo credentials file (default var/demo.json)")
        parser.add_argument("--state", default=None, help="Registers and battery state (var/simulator-state.json)")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable runs")
        parser.add_argument(
            "--disturbances-per-hour",
            type=float,
            default=4.0,
            help="Voltage sags and swells at the grid meter per hour on average (0: none; default 4)",
        )
        parser.add_argument(
            "--mqtt",
            default=None,
            metavar="URL",
            help="mqtt://host:port of a broker: the --mqtt-meters publish there, each logged in as itself",
        )
        parser.add_argument(
            "--mqtt-meters",
            default="all",
            help="comma-separated meter kinds (grid, load, pv, battery, ev_charger) sent over MQTT, or 'all'",
        )
        parser.add_argument(
            "--stop-with-parent", action="store_true", help="Exit when the process that started this one is gone"
        )

    def handle(self, *args, **options):
        config_path = Path(options["config"] or demo_state_path())
        state_path = Path(options["state"] or simulator_state_path())
        interval = options["interval"]
        if interval <= 0:
            raise CommandError("--interval must be positive")
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read {config_path} ({exc}); run `python manage.py demo_setup` first.") from None

        log = self._logger(options["verbosity"])
        site = config["site"]
        meters = [
            MeterCredential(id=m["id"], kind=m["kind"], device_key=m["device_key"], device_secret=m["device_secret"])
            for m in config["meters"]
        ]
        simulator = DepotSimulator(
            timezone=site["timezone"],
            latitude=site.get("latitude"),
            longitude=site.get("longitude"),
            seed=options["seed"],
            disturbances_per_hour=max(0.0, options["disturbances_per_hour"]),
        )
        state = self._load_state(state_path, config)
        if state:
            simulator.restore(state)
        sender, over_mqtt = self._sender(options, meters)

        stop = threading.Event()
        if not options["once"]:

            def request_stop(signum, frame):
                log.info("received %s, stopping", signal.Signals(signum).name)
                stop.set()

            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
        parent = os.getppid()
        log.info(
            "posting %d meters of %r to %s every %g s", len(meters), site["name"], options["url"].rstrip("/"), interval
        )
        if over_mqtt:
            broker = urlsplit(options["mqtt"])  # printed without any login it may carry
            log.info("over MQTT at %s:%s instead: %s", broker.hostname, broker.port, ", ".join(over_mqtt))
        ticks = 0
        try:
            while True:
                result = sender.send(simulator.step(datetime.now(UTC)))
                self._save_state(state_path, config, simulator)
                ticks += 1
                if options["once"]:
                    self.stdout.write(
                        f"sent {result.sent} reading(s): {result.stored} stored, {result.duplicates} duplicate(s), "
                        f"{result.dropped} rejected, {result.pending} pending"
                    )
                    if result.pending or result.dropped:
                        raise CommandError(f"not every reading was accepted ({result.error})")
                    return
                if ticks == 1 or ticks % 60 == 0 or result.dropped:
                    log.info(
                        "tick %d: %d sent, %d stored, %d pending, battery %.0f%%",
                        ticks,
                        result.sent,
                        result.stored,
                        result.pending,
                        simulator.soc * 100,
                    )
                wait = max(interval, result.retry_after or 0.0)
                if stop.wait(wait):
                    break
                if options["stop_with_parent"] and os.getppid() != parent:
                    log.info("parent process is gone, stopping")
                    break
        finally:
            sender.close()
            self._save_state(state_path, config, simulator)
        log.info("stopped after %d ticks", ticks)

    @staticmethod
    def _sender(
        options: dict, meters: list[MeterCredential]
    ) -> tuple[ReadingSender | MqttReadingSender | SplitSender, list[str]]:
        """HTTP for every meter, or MQTT (docs/live.md, "MQTT identity") for those of --mqtt-meters;
        with the kinds of the meters sent over MQTT."""
        if not options["mqtt"]:
            return ReadingSender(options["url"], meters), []
        kinds = {m.kind for m in meters}
        wanted = kinds if options["mqtt_meters"] == "all" else set(filter(None, options["mqtt_meters"].split(",")))
        if unknown := wanted - kinds:
            raise CommandError(f"--mqtt-meters: no demo meter of kind {', '.join(sorted(unknown))}")
        over_mqtt = [m for m in meters if m.kind in wanted]
        over_http = [m for m in meters if m.kind not in wanted]
        mqtt = MqttReadingSender(options["mqtt"], over_mqtt, prefix=settings.MQTT_TOPIC_PREFIX)
        sender = SplitSender(ReadingSender(options["url"], over_http), mqtt) if over_http else mqtt
        return sender, [m.kind for m in over_mqtt]

    @staticmethod
    def _logger(verbosity: int) -> logging.Logger:
        """Timestamped lines on stderr (the project's root logger only shows warnings)."""
        log = logging.getLogger("energy.simulator")
        if not any(getattr(handler, "_jp_simulator", False) for handler in log.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s simulator %(levelname)s %(message)s"))
            handler._jp_simulator = True
            log.addHandler(handler)
        log.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
        log.propagate = False
        return log

    @staticmethod
    def _load_state(path: Path, config: dict) -> dict | None:
        """The saved state, if it belongs to these meters (a new demo database starts afresh)."""
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        keys = sorted(m["device_key"] for m in config["meters"])
        return saved.get("simulator") if saved.get("device_keys") == keys else None

    @staticmethod
    def _save_state(path: Path, config: dict, simulator: DepotSimulator) -> None:
        simulator_state_save(path, [m["device_key"] for m in config["meters"]], simulator)
