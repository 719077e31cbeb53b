"""energy.services: group commit of concurrent single-reading ingests.

These tests run callers in real threads (each with its own database connection), so they use
committed transactions (`transaction=True`); a test holds the first group inside its INSERT
until the others have queued, which makes the grouping deterministic.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from energy.ingest import group_commit as grouping
from energy.ingest import store
from energy.ingest.validation import ReadingsInvalid
from energy.models import Reading
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)


def item(seconds: int, **values) -> dict:
    return {"timestamp": (T0 + timedelta(seconds=seconds)).isoformat(), "total_power": 1000.0, **values}


class HeldInserts:
    """Wraps `_insert_readings`: records the rows of each INSERT, holds the first one until
    released, and fails any INSERT that carries a reading of `poison_meter_id`."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[list[tuple[int, datetime]]] = []
        self.threads: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.poison_meter_id: int | None = None
        original = store._insert_readings

        def insert(rows, **kwargs):
            self.calls.append([(row["meter_id"], row["ts"]) for row in rows])
            self.threads.append(threading.get_ident())
            if len(self.calls) == 1:
                self.entered.set()
                assert self.release.wait(10), "the test never released the first group"
            if any(row["meter_id"] == self.poison_meter_id for row in rows):
                raise RuntimeError("poisoned batch")
            return original(rows, **kwargs)

        monkeypatch.setattr(store, "_insert_readings", insert)


@pytest.fixture
def group_commit(monkeypatch):
    """A fresh group commit for source "test", so no test inherits another's queue."""
    commit = grouping.ReadingsGroupCommit(source="test")
    monkeypatch.setitem(grouping._group_commits, "test", commit)
    return commit


def run_in_thread(target, outcomes: dict, name) -> threading.Thread:
    def run():
        try:
            outcomes[name] = target()
        except BaseException as exc:  # kept: a thread's exception is otherwise lost
            outcomes[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def start_group(monkeypatch, group_commit, leader_meter, followers: dict) -> tuple[HeldInserts, dict, list]:
    """The leader stores alone, held in its INSERT, while each follower (name → (meter, items))
    queues; returns once every follower is queued. Release with `held.release.set()`."""
    held = HeldInserts(monkeypatch)
    outcomes: dict = {}

    def ingest(meter, items):
        return lambda: grouping.reading_batch_ingest_grouped(device=meter, items=items, source="test")

    threads = [run_in_thread(ingest(leader_meter, [item(0)]), outcomes, "leader")]
    assert held.entered.wait(10)
    for name, (meter, items) in followers.items():
        threads.append(run_in_thread(ingest(meter, items), outcomes, name))
    wait_for(lambda: len(group_commit._queue) == len(followers))
    return held, outcomes, threads


def join(threads) -> None:
    for thread in threads:
        thread.join(20)
        assert not thread.is_alive()


def test_callers_queued_during_a_store_share_the_next_transaction_and_get_their_own_results(
    monkeypatch, group_commit, site
):
    meters = [factories.MeterFactory(site=site) for _ in range(4)]
    followers = {f"f{i}": (meter, [item(i + 1)]) for i, meter in enumerate(meters[1:])}
    held, outcomes, threads = start_group(monkeypatch, group_commit, meters[0], followers)
    held.release.set()
    join(threads)

    # The leader's own group, then one INSERT (one transaction) for the three followers.
    assert [len(rows) for rows in held.calls] == [1, 3]
    expected = [(meter.pk, T0 + timedelta(seconds=i + 1)) for i, meter in enumerate(meters[1:])]
    assert sorted(held.calls[1]) == sorted(expected)
    assert len(set(held.threads)) == 2  # each group on its leader's thread (and connection)
    for name, (meter, items) in followers.items():
        result = outcomes[name]
        assert isinstance(result, store.IngestResult), result
        key = (meter.pk, datetime.fromisoformat(items[0]["timestamp"]))
        assert (result.stored, result.duplicates, result.keys) == (1, 0, [key])
        assert result.stored_reading(key).id == Reading.objects.get(meter=meter).pk
    assert outcomes["leader"].stored == 1
    assert Reading.objects.count() == 4
    assert group_commit._leading is False and group_commit._queue == []


def test_a_failing_batch_fails_only_its_own_caller(monkeypatch, group_commit, site):
    leader, good_a, bad, good_b = (factories.MeterFactory(site=site) for _ in range(4))
    followers = {"good_a": (good_a, [item(1)]), "bad": (bad, [item(2)]), "good_b": (good_b, [item(3)])}
    held, outcomes, threads = start_group(monkeypatch, group_commit, leader, followers)
    held.poison_meter_id = bad.pk
    held.release.set()
    join(threads)

    assert isinstance(outcomes["bad"], RuntimeError)
    assert outcomes["good_a"].stored == 1 and outcomes["good_b"].stored == 1
    # The group's INSERT was rolled back; each follower then stored on its own.
    assert len(held.calls[1]) == 3 and sorted(len(rows) for rows in held.calls[2:]) == [1, 1, 1]
    stored = set(Reading.objects.values_list("meter_id", flat=True))
    assert stored == {leader.pk, good_a.pk, good_b.pk}


def test_members_get_their_results_even_if_after_commit_work_fails(monkeypatch, group_commit, site):
    meters = [factories.MeterFactory(site=site) for _ in range(3)]
    followers = {f"f{i}": (meter, [item(i + 1)]) for i, meter in enumerate(meters[1:])}
    held, outcomes, threads = start_group(monkeypatch, group_commit, meters[0], followers)

    def failing_refresh() -> None:
        def fail() -> None:
            raise RuntimeError("rollup refresh queue is down")

        transaction.on_commit(fail)

    monkeypatch.setattr(store, "rollups_refresh_on_commit", failing_refresh)
    held.release.set()
    join(threads)

    # Committed is committed: every member answers with what it stored (a 201), none is
    # stored again on its own and answered as a duplicate.
    assert len(held.calls) == 2
    for name in ("leader", *followers):
        assert isinstance(outcomes[name], store.IngestResult), outcomes[name]
        assert (outcomes[name].stored, outcomes[name].duplicates) == (1, 0)
    assert Reading.objects.count() == 3
    assert group_commit._leading is False and group_commit._queue == []


def test_the_same_meter_and_timestamp_from_two_requests_of_a_group_is_stored_once(monkeypatch, group_commit, site):
    leader, meter = factories.MeterFactory(site=site), factories.MeterFactory(site=site)
    held = HeldInserts(monkeypatch)
    outcomes: dict = {}
    threads = [
        run_in_thread(
            lambda: grouping.reading_batch_ingest_grouped(device=leader, items=[item(0)], source="test"),
            outcomes,
            "leader",
        )
    ]
    assert held.entered.wait(10)
    # Queued in a known order: the earlier request claims the reading.
    for name, power in (("first", 1.0), ("second", 2.0)):
        threads.append(
            run_in_thread(
                lambda power=power: grouping.reading_batch_ingest_grouped(
                    device=meter, items=[item(5, total_power=power)], source="test"
                ),
                outcomes,
                name,
            )
        )
        wait_for(lambda name=name: len(group_commit._queue) == (1 if name == "first" else 2))
    held.release.set()
    join(threads)

    assert len(held.calls) == 2 and len(held.calls[1]) == 1
    assert (outcomes["first"].stored, outcomes["first"].duplicates) == (1, 0)
    assert (outcomes["second"].stored, outcomes["second"].duplicates) == (0, 1)
    assert Reading.objects.get(meter=meter).total_power == 1.0


def test_a_caller_alone_is_a_group_of_one_on_its_own_thread(monkeypatch, group_commit, meter):
    held = HeldInserts(monkeypatch)
    held.release.set()
    first = grouping.reading_batch_ingest_grouped(device=meter, items=[item(0)], source="test")
    again = grouping.reading_batch_ingest_grouped(device=meter, items=[item(0)], source="test")
    assert (first.stored, again.duplicates) == (1, 1)
    assert held.threads == [threading.get_ident()] * 2 and [len(rows) for rows in held.calls] == [1, 1]
    assert group_commit._leading is False and group_commit._queue == []


def test_a_caller_inside_a_transaction_is_not_grouped_and_rolls_back_with_it(monkeypatch, group_commit, meter):
    def refuse(batch):
        raise AssertionError("a caller inside a transaction must not join a group")

    monkeypatch.setattr(group_commit, "ingest", refuse)
    with pytest.raises(RuntimeError, match="rolled back"), transaction.atomic():
        result = grouping.reading_batch_ingest_grouped(device=meter, items=[item(0)], source="test")
        assert result.stored == 1
        raise RuntimeError("rolled back")
    assert not Reading.objects.exists()


def test_validation_errors_are_raised_to_their_caller_before_any_grouping(group_commit, meter):
    with pytest.raises(ReadingsInvalid):
        grouping.reading_batch_ingest_grouped(device=meter, items=[{"timestamp": "never"}], source="test")
    assert group_commit._queue == [] and group_commit._leading is False


def test_single_reading_over_http_outside_a_transaction_is_stored_through_the_group_commit(
    monkeypatch, meter, device_client
):
    grouped = []
    original = grouping.ReadingsGroupCommit.ingest
    monkeypatch.setattr(
        grouping.ReadingsGroupCommit, "ingest", lambda self, batch: grouped.append(batch) or original(self, batch)
    )
    response = device_client(meter).post("/api/energy/energy-data/", item(0))
    assert response.status_code == 201, response.content
    assert len(grouped) == 1 and Reading.objects.filter(meter=meter).count() == 1
    assert device_client(meter).post("/api/energy/energy-data/", item(0)).status_code == 200
