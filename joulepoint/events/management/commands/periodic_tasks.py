"""Celery beat's schedule for the embedded default, where there is no broker, beat or worker.

`make run` starts this beside the server: every entry of CELERY_BEAT_SCHEDULE (the outbox
sweep, delivery retries, rollup catch-up, retention, command expiry) runs in this process on
its interval, as a deployment's `celery beat` + worker would run it. Celery's own beat cannot
help here: it only sends tasks to a broker. Deployments with a broker run `celery beat`
instead (docs/automations.md).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from joulepoint.celery import app

logger = logging.getLogger(__name__)


def beat_schedule() -> dict[str, tuple[str, float]]:
    """(task name, interval in seconds) of each interval entry of CELERY_BEAT_SCHEDULE."""
    entries: dict[str, tuple[str, float]] = {}
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        every = entry["schedule"]
        if isinstance(every, timedelta):
            every = every.total_seconds()
        if not isinstance(every, int | float):
            logger.warning("periodic task %s: only interval schedules run here, skipped", name)
            continue
        entries[name] = (entry["task"], float(every))
    return entries


def periodic_task_run(task_name: str) -> bool:
    """Run one task here and now (tasks it queues run in-process too, without a broker);
    True if it succeeded. A failure is logged and left to the next interval."""
    task = app.tasks.get(task_name)
    if task is None:
        logger.error("periodic task %s is not registered", task_name)
        return False
    result = task.apply()
    if result.failed():
        logger.error("periodic task %s failed: %r", task_name, result.result)
        return False
    return True


class Command(BaseCommand):
    help = "Run CELERY_BEAT_SCHEDULE's tasks in this process on their intervals (the embedded default's beat)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run every task once and exit")
        parser.add_argument(
            "--stop-with-parent", action="store_true", help="Exit when the process that started this one is gone"
        )

    def handle(self, *args, **options):
        app.loader.import_default_modules()
        schedule = beat_schedule()
        if options["once"]:
            failed = [name for name, (task, _) in schedule.items() if not periodic_task_run(task)]
            self.stdout.write(f"ran {len(schedule)} periodic task(s), {len(failed)} failed {failed or ''}".rstrip())
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        parent = os.getppid()
        due = dict.fromkeys(schedule, 0.0)
        self.stdout.write(f"running {len(schedule)} periodic tasks: {', '.join(sorted(schedule))}")
        while not stop.is_set():
            for name, (task, every) in schedule.items():
                if time.monotonic() >= due[name]:
                    # As a worker does between tasks: drop connections the database has closed.
                    close_old_connections()
                    periodic_task_run(task)
                    due[name] = time.monotonic() + every
            if options["stop_with_parent"] and os.getppid() != parent:
                break
            stop.wait(max(0.1, min(due.values(), default=time.monotonic() + 60) - time.monotonic()))
