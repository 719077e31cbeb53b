"""joulepoint.platform.group_commit: the protocol its users (readings, the wallet ledger) share.

Callers run in real threads, each with its own connection, so the tests use committed
transactions; the first group is held inside `store` until the others have queued, which makes
the grouping deterministic.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from joulepoint.platform.group_commit import GroupCommit

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """`store` and `alone` of a GroupCommit that record their calls; the first `store` call waits
    for `release`; an item equal to `poison` makes the call fail; `after_commit` registers a
    failing on-commit hook."""

    def __init__(self, *, limit: int | None = None) -> None:
        self.groups: list[list[str]] = []
        self.alone: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.poison: str | None = None
        self.after_commit_fails = False
        self.commit = GroupCommit(store=self.store, alone=self.run_alone, limit=limit)

    def store(self, items: list[str]) -> list[str]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.entered.set()
            assert self.release.wait(10), "the test never released the first group"
        if self.poison in items:
            raise RuntimeError(f"poisoned {self.poison}")
        if self.after_commit_fails:
            transaction.on_commit(lambda: 1 / 0)
        return [f"stored {item}" for item in items]

    def run_alone(self, item: str) -> str:
        self.alone.append(item)
        if item == self.poison:
            raise RuntimeError(f"poisoned {item} alone")
        return f"alone {item}"


def start(recorder: Recorder, followers: list[str]) -> tuple[dict, list[threading.Thread]]:
    """The leader's group is held in `store` while every follower queues behind it."""
    outcomes: dict = {}

    def run(item: str) -> None:
        try:
            outcomes[item] = recorder.commit.submit(item)
        except BaseException as exc:  # kept: a thread's exception is otherwise lost
            outcomes[item] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=("leader",))]
    threads[0].start()
    assert recorder.entered.wait(10)
    for item in followers:
        threads.append(threading.Thread(target=run, args=(item,)))
        threads[-1].start()
    deadline = time.monotonic() + 10
    while len(recorder.commit._queue) < len(followers):
        assert time.monotonic() < deadline, "the followers never queued"
        time.sleep(0.005)
    return outcomes, threads


def finish(recorder: Recorder, threads: list[threading.Thread]) -> None:
    recorder.release.set()
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()
    assert recorder.commit._leading is False and recorder.commit._queue == []


def test_callers_queued_meanwhile_share_the_next_group_and_each_gets_its_own_result():
    recorder = Recorder()
    outcomes, threads = start(recorder, ["a", "b", "c"])
    finish(recorder, threads)

    assert recorder.groups[0] == ["leader"] and sorted(recorder.groups[1]) == ["a", "b", "c"]
    assert outcomes == {item: f"stored {item}" for item in ("leader", "a", "b", "c")}
    assert recorder.alone == []


def test_a_group_takes_at_most_limit_callers():
    recorder = Recorder(limit=2)
    outcomes, threads = start(recorder, ["a", "b", "c"])
    finish(recorder, threads)

    assert [len(group) for group in recorder.groups] == [1, 2, 1]
    assert sorted(outcomes.values()) == sorted(f"stored {item}" for item in ("leader", "a", "b", "c"))


def test_a_failing_group_of_several_runs_each_member_alone_and_fails_only_the_bad_one():
    recorder = Recorder()
    outcomes, threads = start(recorder, ["a", "bad", "c"])
    recorder.poison = "bad"
    finish(recorder, threads)

    assert sorted(recorder.alone) == ["a", "bad", "c"]
    assert outcomes["a"] == "alone a" and outcomes["c"] == "alone c"
    assert isinstance(outcomes["bad"], RuntimeError) and str(outcomes["bad"]) == "poisoned bad alone"


def test_a_failing_group_of_one_raises_to_its_caller_without_running_again():
    recorder = Recorder()
    recorder.release.set()
    recorder.poison = "leader"
    with pytest.raises(RuntimeError, match="poisoned leader"):
        recorder.commit.submit("leader")
    assert recorder.groups == [["leader"]] and recorder.alone == []
    assert recorder.commit.submit("next") == "stored next"  # the next caller leads


def test_committed_members_keep_their_results_when_after_commit_work_fails():
    recorder = Recorder()
    recorder.after_commit_fails = True
    outcomes, threads = start(recorder, ["a", "b"])
    finish(recorder, threads)

    assert outcomes == {item: f"stored {item}" for item in ("leader", "a", "b")}
    assert recorder.alone == []  # nothing committed is done twice
