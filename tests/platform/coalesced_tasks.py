"""A coalesced task for tests/platform/test_coalescing.py: a worker started with
`-I tests.platform.coalesced_tasks` registers it. Each run appends one JSON line (its process and
the values it got) to the file named by JP_COALESCED_LOG, then takes JP_COALESCED_SECONDS, so
messages queue up behind it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from celery import shared_task

from joulepoint.platform.coalescing import CoalescedTask

QUEUE = "coalesced-test"
NAME = "tests.coalesced_record"


@shared_task(name=NAME, base=CoalescedTask, queue=QUEUE, acks_late=True, reject_on_worker_lost=True)
def coalesced_record(*values: str) -> None:
    log = Path(os.environ["JP_COALESCED_LOG"])
    with log.open("a") as out:
        out.write(json.dumps({"pid": os.getpid(), "values": list(values)}) + "\n")
    if "kill-once" in values and not log.with_suffix(".killed").exists():
        log.with_suffix(".killed").touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the pool process dies mid-run, as under the OOM killer
    if "fail" in values:
        raise RuntimeError("this run fails")
    time.sleep(float(os.environ.get("JP_COALESCED_SECONDS", "0.3")))
