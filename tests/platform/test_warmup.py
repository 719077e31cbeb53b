"""joulepoint.platform.warmup: a server process loads its views and task modules at start, so the first
request of every worker after a restart does not pay for the imports (~0.6 s seen by the first
bulk POSTs of bench/live.py before)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import gc
import {module}
loaded = {{name: name in sys.modules for name in {names!r}}}
print(json.dumps({{"loaded": loaded, "frozen": gc.get_freeze_count()}}))
"""
LOADED_AT_START = ["energy.api.views", "automations.api.views", "energy.analytics.tasks", "automations.tasks"]


@pytest.mark.parametrize("module", ["joulepoint.wsgi", "joulepoint.asgi"])
def test_server_entry_points_load_views_and_tasks_and_freeze_them_before_any_request(module):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "joulepoint.settings"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", PROBE.format(module=module, names=LOADED_AT_START)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["loaded"] == dict.fromkeys(LOADED_AT_START, True)
    # What the process loaded is out of the collector's generations: a full collection under
    # load no longer walks Django and the apps.
    assert probe["frozen"] > 100_000
