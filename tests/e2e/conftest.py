"""Real servers for end-to-end tests: the ASGI app under uvicorn and a Celery worker, as
subprocesses pointed at the test database, so they see exactly what a test committed.

Tests using them need `@pytest.mark.django_db(transaction=True)`: rows written inside the
usual per-test transaction would be invisible to another process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.net import free_port

BASE_DIR = Path(settings.BASE_DIR)
VENV_BIN = Path(sys.executable).parent
# A machine shared with other runs may need long to start a server (E2E_STARTUP_TIMEOUT, seconds):
# the first /api/schema/ build alone took 30-80 s at a load average of 12-16.
STARTUP_TIMEOUT = float(os.environ.get("E2E_STARTUP_TIMEOUT", "120"))


def test_database_url() -> str:
    """A DATABASE_URL for the database the tests run against (after pytest-django set it up)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"  # absolute path → sqlite:////abs/path
    if db["ENGINE"] == "django.db.backends.postgresql":
        auth = db["USER"] or ""
        if db.get("PASSWORD"):
            auth += f":{db['PASSWORD']}"
        host = db.get("HOST") or "127.0.0.1"
        port = db.get("PORT") or 5432
        return f"postgres://{auth}{'@' if auth else ''}{host}:{port}/{db['NAME']}"
    raise RuntimeError(f"e2e fixtures do not know how to share a {db['ENGINE']} database")


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        TEST_DATABASE_NAME=connection.settings_dict["NAME"],
        DJANGO_SETTINGS_MODULE="joulepoint.settings",
        # Hold no idle connection: the test database is flushed and finally dropped under them.
        DB_CONN_MAX_AGE="0",
        PYTHONUNBUFFERED="1",
    )
    return env


class ServerProcess:
    """A subprocess whose output goes to a file, shown when it fails to start."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str] | None = None):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"jp-e2e-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            args,
            cwd=BASE_DIR,
            env={**subprocess_env(), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches its children
        )

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-5000:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def _wait_for_http(server: ServerProcess, url: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            # The first schema build can take seconds on a loaded machine: a short read timeout
            # would cut every attempt off before it answers.
            with urllib.request.urlopen(url, timeout=max(2.0, min(30.0, deadline - time.monotonic()))):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not answer {url} within {timeout}s:\n{server.output()}")


def _served(name: str, args: list[str], port: int) -> Iterator[str]:
    """Start a server, yield its base URL once it answers, and stop it afterwards."""
    server = ServerProcess(name, args)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(server, f"{base_url}/api/schema/")
        yield base_url
    finally:
        server.stop()


@pytest.fixture(scope="package")
def asgi_server(django_db_setup) -> Iterator[str]:
    """The platform under uvicorn on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    yield from _served(
        "uvicorn",
        [
            str(VENV_BIN / "uvicorn"),
            "joulepoint.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        port,
    )


@pytest.fixture(scope="package")
def wsgi_server(django_db_setup) -> Iterator[str]:
    """The HTTP API as docs/serving.md deploys it, gunicorn with two gthread workers (so two
    processes answer in turn), on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    yield from _served(
        "gunicorn",
        [
            str(VENV_BIN / "gunicorn"),
            "joulepoint.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--log-level",
            "warning",
        ],
        port,
    )


def _wait_for_worker(server: ServerProcess, hostname: str) -> None:
    from joulepoint.celery import app

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        server.check_alive()
        if app.control.ping(destination=[hostname], timeout=1.0):
            return
    raise RuntimeError(f"the Celery worker did not answer a ping within {STARTUP_TIMEOUT}s:\n{server.output()}")


@pytest.fixture(scope="module")
def celery_worker_process(django_db_setup) -> Iterator[str]:
    """A real Celery worker on the configured broker; yields its hostname.

    Module-scoped: it stops with the last test of its module, so it never consumes tasks that
    later tests enqueue: those of a test database about to be flushed (a deadlock seen in CI), and
    those meant for the workers later modules start with their own settings (package-scoped, it
    took the Procfile deployment's webhook attempts and refused their loopback receiver).

    Skips when no broker is configured (the embedded default runs tasks in-process)."""
    if not settings.CELERY_BROKER_URL:
        pytest.skip("needs a real Celery broker: set REDIS_URL (or CELERY_BROKER_URL) to run with a worker")
    hostname = f"e2e-{os.getpid()}@{socket.gethostname()}"
    worker = ServerProcess(
        "celery-worker",
        [
            str(VENV_BIN / "celery"),
            "-A",
            "joulepoint",
            "worker",
            "-l",
            "warning",
            "--pool",
            "solo",
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
        ],
    )
    try:
        _wait_for_worker(worker, hostname)
        yield hostname
    finally:
        worker.stop()


class OwnRedis:
    """A redis-server of the test's own on a free 127.0.0.1 port, which the test may stop and
    start again (the shared Redis on 6379 is never touched). Keeps nothing on disk, like a
    restarted production Redis without persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: ServerProcess | None = None

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            pytest.skip("needs redis-server")
        self.server = ServerProcess(
            "redis",
            [redis_server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            self.server.check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen within {STARTUP_TIMEOUT}s:\n{self.server.output()}")

    def kill(self) -> None:
        """SIGKILL: the way a crashed Redis goes, connections dropped without a goodbye."""
        if self.server is not None:
            os.killpg(self.server.process.pid, signal.SIGKILL)
            self.server.process.wait(timeout=10)
            self.server.stop()
            self.server = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    redis = OwnRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@pytest.fixture
def live_url(asgi_server, transactional_db) -> str:
    """The live server's base URL, for a test whose writes are committed."""
    return asgi_server


@pytest.fixture
def celery_worker(celery_worker_process, transactional_db) -> str:
    return celery_worker_process


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium(monkeypatch) -> Iterator:
    """Launches Debian's chromium under Playwright: `chromium(webgl=False)` gives a browser
    (closed after the test). `webgl=True` renders WebGL in software (SwiftShader), which the 3D
    topology view needs; otherwise the GPU is off. Skips where chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in the test's thread; the ORM calls are the test's.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    browsers = []
    with sync_playwright() as playwright:

        def launch(*, webgl: bool = False):
            graphics = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"] if webgl else ["--disable-gpu"]
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *graphics])
            browsers.append(browser)
            return browser

        try:
            yield launch
        finally:
            for browser in browsers:
                browser.close()
