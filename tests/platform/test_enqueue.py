"""Tasks queued by name are found in a process that never imported their module (a web process,
the MQTT bridge, a management command)."""

from __future__ import annotations

import json
import subprocess
import sys

from django.conf import settings

NAMES = [
    "energy.analytics.rollups_refresh_pending",
    "energy.tasks.device_command_deliver",
    "joulepoint.events.tasks.outbox_dispatch_one",
    "automations.tasks.rules_evaluate_event",
    "automations.tasks.delivery_attempt_many",
]
SCRIPT = """
import json, sys
import django
django.setup()
from joulepoint.platform.enqueue import registered_task
before = "energy.analytics.tasks" in sys.modules
found = {name: registered_task(name).name for name in %r}
print(json.dumps({"imported_before": before, "found": found}))
"""


def test_every_task_a_service_names_is_found_in_a_fresh_process():
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT % NAMES],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        env={"DJANGO_SETTINGS_MODULE": "joulepoint.settings", "PATH": "/usr/bin:/bin"},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported_before"] is False  # the lookup itself brought the module in
    assert result["found"] == {name: name for name in NAMES}
