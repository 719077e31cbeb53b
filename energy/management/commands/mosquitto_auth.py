"""`python manage.py mosquitto_auth --dir DIR`: Mosquitto's password and ACL files from the
database (docs/live.md, "MQTT identity"); `--listen` also writes a mosquitto.conf using them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from energy.devices import mqtt_auth
from energy.downlink import mqtt as topics


class Command(BaseCommand):
    help = "Write Mosquitto's password file and ACL for every active device and the bridge account."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", default=settings.MQTT_AUTH_DIR or None, help="default: MQTT_AUTH_DIR")
        parser.add_argument(
            "--listen", default=None, help="host:port or mqtt://host:port: also write mosquitto.conf for a broker there"
        )
        parser.add_argument("--reload", action="store_true", help="SIGHUP the broker of the pid file afterwards")
        parser.add_argument("--print-url", action="store_true", help="print only the bridge's mqtt:// URL")

    def handle(self, *args, **options) -> None:
        if not options["dir"]:
            raise CommandError("Pass --dir or set MQTT_AUTH_DIR.")
        directory = Path(options["dir"])
        try:
            files = mqtt_auth.mqtt_broker_auth_write(directory=directory)
        except mqtt_auth.MosquittoMissing as exc:
            raise CommandError(str(exc)) from exc
        host, port = "127.0.0.1", 1883
        if listen := options["listen"]:
            try:
                address = topics.broker_address(listen if "://" in listen else f"mqtt://{listen}")
            except ValueError as exc:
                raise CommandError(f"--listen: {exc}") from exc
            host, port = address.host, address.port
            mqtt_auth.mosquitto_config(directory=directory, host=host, port=port)
        if options["reload"]:
            mqtt_auth.mqtt_broker_reload(pid_file=Path(settings.MQTT_BROKER_PID_FILE or directory / mqtt_auth.PID_FILE))
        password = quote(mqtt_auth.bridge_password(directory=directory), safe="")
        url = f"mqtt://{quote(settings.MQTT_BRIDGE_USERNAME, safe='')}:{password}@{host}:{port}"
        if options["print_url"]:
            self.stdout.write(url)
            return
        self.stdout.write(f"{files.password_file} and {files.acl_file}: {files.devices} devices and the bridge account")
