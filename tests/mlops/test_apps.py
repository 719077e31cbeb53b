"""Loading the mlops app (every process does at django.setup(): web, workers, beat, the MQTT
bridge, the OCPP server) does not load the training and serving stack: the functions that train
or score import it when they run (the training and inference tests run them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_AND_SERVING = ["sklearn", "skl2onnx", "onnx", "onnxruntime", "pvlib"]


def modules_after(code: str) -> set[str]:
    script = f"import django, json, sys\ndjango.setup()\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "joulepoint.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_a_process_that_neither_trains_nor_scores_does_not_load_the_ml_stack():
    loaded = modules_after("import django.contrib.admin; django.contrib.admin.autodiscover()")
    assert "mlops.tasks" in loaded and "mlops.admin" in loaded  # the app and its doors are loaded
    assert [name for name in TRAINING_AND_SERVING if name in loaded] == []
