"""Start a real Celery worker (with embedded beat for the automations sweeper) against the test
database, for the end-to-end tests and the bench."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database this process is using now (the test database under pytest)."""
    sd = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{sd['NAME']}"
    auth = sd["USER"] or ""
    if sd.get("PASSWORD"):
        auth += f":{sd['PASSWORD']}"
    host = sd["HOST"] or "127.0.0.1"
    return f"postgres://{auth}@{host}:{sd['PORT'] or 5432}/{sd['NAME']}"


class Worker:
    """`Worker(env).start()`; `.kill()` kills the whole process group at once (no warm shutdown)."""

    def __init__(
        self,
        extra_env: dict[str, str] | None = None,
        *,
        concurrency: int = 2,
        beat: bool = True,
        queues: str = "default",
        extra_args: tuple[str, ...] = (),
    ):
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DB_CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.env.pop("TEST_DATABASE_NAME", None)
        self.concurrency = concurrency
        self.beat = beat
        self.queues = queues
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="jp-worker-", suffix=".log", delete=False)  # noqa: SIM115

    def start(self) -> Worker:
        schedule = Path(tempfile.mkdtemp(prefix="jp-beat-")) / "schedule"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "joulepoint",
            "worker",
            "--loglevel=WARNING",
            f"--concurrency={self.concurrency}",
            "--pool=prefork",
            "-Q",
            self.queues,
            "-n",
            f"e2e-{os.getpid()}-{time.time_ns()}@%h",
            *self.extra_args,
        ]
        if self.beat:
            command += ["-B", "-s", str(schedule)]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-5000:]


def purge_queue(broker_url: str) -> None:
    """Drop tasks left in the broker by earlier (non-eager) test runs."""
    if broker_url.startswith("amqp"):
        from joulepoint.celery import app

        app.control.purge()  # RabbitMQ keeps no unacked set of its own to clear
        return
    import redis

    client = redis.Redis.from_url(broker_url)
    client.delete("default", "ml", "inference", "unacked", "unacked_index")
