"""Mosquitto's password and ACL files for the platform's devices (docs/live.md, "MQTT identity").

Every MQTT client logs in: a device as its MQTT id (`meter-<id>` / `gateway-<id>`) with its
device key as the password, the bridge (and the downlink of web and worker processes) as
`MQTT_BRIDGE_USERNAME` with its own password. The ACL lets a device write only
`<prefix>/<its id>/readings` and read only its own `ack` and `commands`; the bridge reads every
device's readings and writes their acks and commands; anonymous clients are refused by the
broker's `allow_anonymous false`.

These are Mosquitto's own mechanisms, not ours: `password_file` (hashed by `mosquitto_passwd -U`,
never by code of ours) and `acl_file` with `pattern` rules, both re-read when the broker gets
SIGHUP, which also disconnects clients whose password no longer matches (a rotated key).
We write the files from the database, so the database stays the one place credentials live.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from energy.downlink import mqtt as topics
from energy.models import Gateway, Meter

logger = logging.getLogger(__name__)

PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
CONFIG_FILE = "mosquitto.conf"
PID_FILE = "mosquitto.pid"
BRIDGE_SECRET_FILE = "bridge.secret"


@dataclass(frozen=True)
class BrokerAuthFiles:
    password_file: Path
    acl_file: Path
    devices: int


class MosquittoMissing(RuntimeError):
    """mosquitto_passwd is not installed (Debian: apt-get install mosquitto)."""


def bridge_password(*, directory: Path) -> str:
    """The bridge account's password: MQTT_URL's, when it carries one, else one generated once
    and kept in `<directory>/bridge.secret` (mode 600)."""
    if settings.MQTT_URL:
        address = topics.broker_address(settings.MQTT_URL)
        if address.username == settings.MQTT_BRIDGE_USERNAME and address.password:
            return address.password
    path = directory / BRIDGE_SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def broker_acl(*, bridge_username: str, legacy_keys: list[tuple[str, str]] = ()) -> str:
    """The ACL file: the bridge's topics, then one `pattern` per device topic (`%u` is the login).

    `legacy_keys` ((mqtt id, device key) pairs) also opens each device's old key topics while
    MQTT_LEGACY_KEY_TOPICS is on."""
    prefix = settings.MQTT_TOPIC_PREFIX
    lines = [
        "# Written by joulepoint (manage.py mosquitto_auth) from the database; edits are overwritten.",
        f"user {bridge_username}",
        f"topic read {prefix}/+/readings",
        f"topic write {prefix}/+/ack",
        f"topic write {prefix}/+/commands",
        "",
        f"pattern write {prefix}/%u/readings",
        f"pattern read {prefix}/%u/ack",
        f"pattern read {prefix}/%u/commands",
    ]
    for mqtt_id, key in legacy_keys:
        lines += ["", f"user {mqtt_id}", f"topic write {prefix}/{key}/readings"]
        lines += [f"topic read {prefix}/{key}/ack", f"topic read {prefix}/{key}/commands"]
    return "\n".join(lines) + "\n"


def _device_logins() -> list[tuple[str, str]]:
    """(MQTT id, device key) of every active meter and gateway, every organization."""
    logins = []
    for model in (Meter, Gateway):
        for pk, key in model.objects.filter(is_active=True).order_by("pk").values_list("pk", "device_key"):
            logins.append((f"{model._meta.model_name}-{pk}", str(key)))
    return logins


def _write_private(path: Path, text: str) -> None:
    """Write atomically (the broker may re-read at any moment), readable by the owner only."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def mqtt_broker_auth_write(*, directory: Path) -> BrokerAuthFiles:
    """Write `<directory>/passwd` (hashed) and `<directory>/acl` for every active device.

    Raises MosquittoMissing when mosquitto_passwd cannot be found."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise MosquittoMissing("mosquitto_passwd is not installed (apt-get install mosquitto)")
    directory.mkdir(parents=True, exist_ok=True)
    bridge_username = settings.MQTT_BRIDGE_USERNAME
    logins = _device_logins()
    # mosquitto_passwd -U hashes a file of `user:password` lines in place; it runs on a private
    # temporary copy so the broker never reads clear passwords.
    clear = [f"{bridge_username}:{bridge_password(directory=directory)}"] + [f"{u}:{p}" for u, p in logins]
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".passwd.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(clear) + "\n")
        subprocess.run([tool, "-U", temporary], check=True, capture_output=True, timeout=120)  # noqa: S603 (our own path)
        os.replace(temporary, directory / PASSWORD_FILE)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    legacy = logins if settings.MQTT_LEGACY_KEY_TOPICS else []
    _write_private(directory / ACL_FILE, broker_acl(bridge_username=bridge_username, legacy_keys=legacy))
    return BrokerAuthFiles(directory / PASSWORD_FILE, directory / ACL_FILE, len(logins))


def mosquitto_config(*, directory: Path, host: str, port: int) -> Path:
    """`<directory>/mosquitto.conf` for a broker on host:port that uses these files (make run, CI, tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE
    path.write_text(
        f"# Written by manage.py mosquitto_auth --listen {host}:{port}\n"
        f"listener {port} {host}\n"
        "allow_anonymous false\n"
        f"password_file {(directory / PASSWORD_FILE).resolve()}\n"
        f"acl_file {(directory / ACL_FILE).resolve()}\n"
        f"pid_file {(directory / PID_FILE).resolve()}\n"
        "persistence false\n"
        # Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read
        # these owner-only files: it keeps the identity of whoever runs the platform.
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
    )
    return path


def mqtt_broker_reload(*, pid_file: Path) -> bool:
    """SIGHUP the broker whose pid is in `pid_file`: it re-reads both files and drops clients
    whose password no longer matches. False (logged) when there is no such broker."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        logger.warning("MQTT broker not reloaded (pid file %s): %s", pid_file, exc)
        return False
    return True


def mqtt_broker_auth_sync() -> BrokerAuthFiles | None:
    """Rewrite the files in MQTT_AUTH_DIR and reload the broker; None when MQTT_AUTH_DIR is unset."""
    if not settings.MQTT_AUTH_DIR:
        return None
    directory = Path(settings.MQTT_AUTH_DIR)
    files = mqtt_broker_auth_write(directory=directory)
    mqtt_broker_reload(pid_file=Path(settings.MQTT_BROKER_PID_FILE or directory / PID_FILE))
    return files
