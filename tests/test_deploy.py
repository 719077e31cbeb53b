"""The deployment files docs/deploy.md hands a newcomer: the Procfile names every process, and
deploy/nginx.conf is a configuration nginx accepts (`nginx -t`; .ci/run installs nginx-light)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from honcho.environ import parse_procfile

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
    assert set(processes) == {"web", "ws", "worker", "ml", "beat", "mqtt", "ocpp"}
    assert processes["web"].startswith("gunicorn joulepoint.wsgi:application")
    assert "--worker-class gthread" in processes["web"]
    assert "uvicorn joulepoint.asgi:application" in processes["ws"]
    assert processes["worker"].startswith("celery -A joulepoint worker -Q default")
    assert processes["ml"].startswith("celery -A joulepoint worker -Q ml")  # dataset builds, training, inference
    assert processes["beat"].startswith("celery -A joulepoint beat")
    assert processes["mqtt"].startswith("python manage.py mqtt_bridge")
    assert processes["ocpp"].startswith("python manage.py ocpp_server")  # the chargers' OCPP 2.0.1 door


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed (.ci/run installs nginx-light)")
def test_nginx_accepts_the_shipped_config(tmp_path):
    conf = nginx_main_conf(tmp_path, (ROOT / "deploy" / "nginx.conf").read_text())
    result = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
