"""joulepoint/platform/coalescing.py with a real worker (one pool process, prefetch 64) and broker:
a message alone runs at once, the ones that queue up behind a run are run together, and each
message is acknowledged, failed or given back exactly as its run is."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.conf import settings

from joulepoint.celery import app
from joulepoint.platform.coalescing import CoalescedTask
from tests.automations.worker import Worker
from tests.platform.coalesced_tasks import QUEUE, coalesced_record

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL,
        reason="needs a Celery broker: set REDIS_URL (or CELERY_BROKER_URL); "
        "the embedded default runs tasks in-process",
    ),
]


def queued() -> int:
    """Messages on the queue, given back ones included (Redis keeps no empty list: declare it)."""
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(QUEUE, durable=True, auto_delete=False).message_count


@pytest.fixture
def runs_log(tmp_path) -> Path:
    queued()
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(QUEUE)
    return tmp_path / "runs.jsonl"


def send(*values: str) -> None:
    for value in values:
        coalesced_record.apply_async(args=(value,))


def worker_for(runs_log: Path, seconds: float = 0.3) -> Worker:
    return Worker(
        {"JP_COALESCED_LOG": str(runs_log), "JP_COALESCED_SECONDS": str(seconds)},
        concurrency=1,
        beat=False,
        queues=QUEUE,
        extra_args=("-I", "tests.platform.coalesced_tasks", "--prefetch-multiplier", "64"),
    ).start()


def runs(runs_log: Path) -> list[list[str]]:
    if not runs_log.exists():
        return []
    return [json.loads(line)["values"] for line in runs_log.read_text().splitlines()]


def wait_for(check, worker: Worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; worker log:\n{worker.output()}")
        time.sleep(0.1)


def test_a_message_alone_runs_at_once_and_those_queued_behind_a_run_run_together(runs_log):
    values = [f"v{i}" for i in range(40)]  # more than two full groups wait behind the first
    send(*values)  # all queued before the worker starts
    worker = worker_for(runs_log, seconds=1.0)  # time for the rest to reach the worker while v0 runs
    try:
        wait_for(lambda: sum(len(run) for run in runs(runs_log)) >= len(values), worker)
        time.sleep(1.5)  # the last run ends (a line is written as a run starts); nothing runs twice
    finally:
        worker.stop()
    done = runs(runs_log)
    assert sorted(value for run in done for value in run) == sorted(values)  # each exactly once
    assert done[0] == ["v0"]  # the first waits for nobody
    assert [value for run in done for value in run] == values  # in queue order
    # 39 wait behind v0: groups as large as a run takes (16) and no larger, e.g. 1, 16, 16, 7.
    assert max(len(run) for run in done) == CoalescedTask.coalesce_max == 16
    assert len(done) <= 5
    assert queued() == 0  # every message acknowledged: none came back when the worker stopped


def test_messages_of_a_run_whose_process_dies_are_given_back_and_run_again(runs_log):
    send("first", "kill-once", "b", "c")
    worker = worker_for(runs_log)

    def run_again() -> list[str]:
        return sorted(value for run in runs(runs_log)[2:] for value in run)

    try:
        wait_for(lambda: len(run_again()) >= 3, worker)
        time.sleep(1.0)  # the last run ends
    finally:
        worker.stop()
    done = runs(runs_log)
    assert done[0] == ["first"]
    assert done[1] == ["kill-once", "b", "c"]  # queued behind "first"; its pool process was killed
    assert run_again() == ["b", "c", "kill-once"]  # each given back (reject_on_worker_lost), each run once more
    assert queued() == 0


def test_a_failing_run_fails_each_of_its_messages_once(runs_log):
    send("first", "fail", "b")
    worker = worker_for(runs_log)
    try:
        wait_for(lambda: len(runs(runs_log)) >= 2, worker)
        time.sleep(1.0)  # a message given back would run again by now
    finally:
        worker.stop()
    assert runs(runs_log) == [["first"], ["fail", "b"]]
    assert queued() == 0  # failed, acknowledged (acks_late acknowledges failures), not given back
    assert worker.output().count("RuntimeError: this run fails") >= 1
