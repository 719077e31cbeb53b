"""Group commit: concurrent single-reading requests stored in one transaction."""

from __future__ import annotations

import threading

from django.db import connection

from energy.ingest import store
from energy.ingest.store import IngestResult, PreparedReadings
from energy.models import Gateway, Meter
from joulepoint.platform.group_commit import GroupCommit


class ReadingsGroupCommit(GroupCommit[PreparedReadings, IngestResult]):
    """Joins concurrent callers of one process into one `readings_store` transaction
    (joulepoint.platform.group_commit): one INSERT, one detection pass, one commit per group.

    If a group of several fails, every member stores its batch again in a transaction of its
    own, so one bad batch fails only its own caller; a batch alone that fails raises to its
    caller. Once committed, every member gets its result, even if after-commit work (event
    fan-out, rollup refresh) then fails: nothing answered 2xx is lost or stored twice.
    """

    def __init__(self, *, source: str) -> None:
        self.source = source
        super().__init__(store=self._readings_store, alone=self._readings_store_alone)

    def ingest(self, batch: PreparedReadings) -> IngestResult:
        return self.submit(batch)

    def _readings_store(self, batches: list[PreparedReadings]) -> list[IngestResult]:
        return store.readings_store(batches=batches, source=self.source)

    def _readings_store_alone(self, batch: PreparedReadings) -> IngestResult:
        return store.readings_store(batches=[batch], source=self.source)[0]


_group_commits: dict[str, ReadingsGroupCommit] = {}
_group_commits_lock = threading.Lock()


def reading_batch_ingest_grouped(*, device: Meter | Gateway, items: list, source: str) -> IngestResult:
    """`reading_batch_ingest`, with the store joined to concurrent callers' (group commit).

    Under a threaded server, requests that arrive while another group is being stored are
    stored together in the next group: one INSERT, one detection pass, one commit for all of
    them. The answer is the caller's own, as `reading_batch_ingest` would give it: validation
    errors are raised before any grouping; a reading repeating one of an earlier request of the
    same group is a duplicate of it; nothing is answered before its group has committed.

    A caller already inside a transaction (ATOMIC_REQUESTS, or its own atomic block) takes the
    ungrouped path: its readings must commit or roll back with that transaction, never with
    another caller's, and nobody else's readings may wait on a transaction it leaves open.
    """
    batch = store.readings_prepare(device=device, items=items)
    if connection.in_atomic_block:
        return store.readings_store(batches=[batch], source=source)[0]
    group_commit = _group_commits.get(source)
    if group_commit is None:
        with _group_commits_lock:
            group_commit = _group_commits.setdefault(source, ReadingsGroupCommit(source=source))
    return group_commit.ingest(batch)
