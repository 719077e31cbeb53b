"""The deployment files docs/deploy.md hands a newcomer: the Procfile names every process, and
deploy/nginx.conf is a configuration nginx accepts (`nginx -t`; .ci/run installs nginx-light), and
`PRODUCTION=1` passes `manage.py check --deploy` (docs/deploy.md, "Hardening")."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from honcho.environ import parse_procfile
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from joulepoint.tenancy.services import api_credential_create

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_main_conf(directory: Path, site: str) -> Path:
    """A minimal nginx.conf of our own around the site file, with every path under `directory`
    (nginx's defaults point at /var/lib/nginx and /run, which a test must not touch)."""
    (directory / "site.conf").write_text(site)
    temps = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"user root;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'};\ndaemon off;\n"
        f"events {{}}\nhttp {{\n    access_log off;\n{temps}\n    include {directory / 'site.conf'};\n}}\n"
    )
    return conf


def site_on_ports(*, listen: int, http: int, ws: int) -> str:
    """deploy/nginx.conf with its ports moved (tests bind free 127.0.0.1 ports only)."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (
        ("127.0.0.1:8001", f"127.0.0.1:{http}"),
        ("127.0.0.1:8002", f"127.0.0.1:{ws}"),
        ("listen 80;", f"listen 127.0.0.1:{listen};"),
    ):
        assert old in site, old
        site = site.replace(old, new)
    return site


def test_the_procfile_starts_every_process_of_the_deployment():
    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    assert set(processes) == {"web", "ws", "worker", "ml", "inference", "beat", "mqtt", "ocpp"}
    assert processes["web"].startswith("gunicorn joulepoint.wsgi:application")
    assert "--worker-class gthread" in processes["web"]
    assert "uvicorn joulepoint.asgi:application" in processes["ws"]
    assert processes["worker"].startswith("celery -A joulepoint worker -Q default")
    assert processes["ml"].startswith("celery -A joulepoint worker -Q ml")  # dataset builds, training
    assert processes["inference"].startswith("celery -A joulepoint worker -Q inference")  # anomaly scoring
    assert processes["beat"].startswith("celery -A joulepoint beat")
    assert processes["mqtt"].startswith("python manage.py mqtt_bridge")
    assert processes["ocpp"].startswith("python manage.py ocpp_server")  # the chargers' OCPP 2.0.1 door


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (.ci/run installs nginx-light)")
def test_nginx_accepts_the_shipped_config(tmp_path):
    conf = nginx_main_conf(tmp_path, (ROOT / "deploy" / "nginx.conf").read_text())
    result = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def production_env(**extra: str) -> dict[str, str]:
    """The environment docs/deploy.md step 4 asks for, on the test's own database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SECURE_", "OAUTH2_ALLOW_"))}
    env.update(
        PRODUCTION="1", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="energy.example.com", DEBUG="0", **extra
    )
    return env


def test_check_deploy_is_clean_in_production_mode():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=600,  # a loaded 2-core CI machine
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout


def test_the_plain_http_opt_outs_are_what_check_deploy_reports():
    """The opt-outs for a plain-HTTP test deployment (tests/e2e/test_procfile_e2e.py) really turn
    the hardening off, and check --deploy says so."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(SECURE_SSL_REDIRECT="0", SECURE_COOKIES="0", SECURE_HSTS_SECONDS="0"),
        capture_output=True,
        text=True,
        timeout=600,  # a loaded 2-core CI machine
    )
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr, result.stderr


@pytest.mark.django_db
def test_bearer_tokens_are_taken_from_the_authorization_header_only(org):
    """RFC 9700 §4.3.2: a token in a URL ends up in logs and Referer headers. /ws/live/ reads its
    own `?token=` (browsers cannot set headers on a WebSocket); the REST API takes none."""
    credential = api_credential_create(organization=org, name="query", scopes=["energy:read"])
    token = AccessToken.objects.create(
        application=credential.application,
        token="query-string-token",
        scope="energy:read",
        expires=timezone.now() + timedelta(hours=1),
    ).token
    assert APIClient().get("/api/energy/sites/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert APIClient().get("/api/energy/sites/", {"access_token": token}).status_code == 401
    # A body is never read for a token either (the API parses JSON only; oauthlib reads form bodies).
    body = APIClient().post("/api/energy/sites/", {"access_token": token, "name": "x"}, format="json")
    assert body.status_code == 401
