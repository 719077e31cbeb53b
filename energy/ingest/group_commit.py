"""Group commit: concurrent single-reading requests stored in one transaction."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from django.db import connection, transaction

from energy.ingest import store
from energy.ingest.store import IngestResult, PreparedReadings
from energy.models import Gateway, Meter

logger = logging.getLogger(__name__)


# Group commit ------------------------------------------------------------------------------
#
# Hand-written rather than taken from a library: what is grouped is a Django transaction on
# the calling thread's own connection, with per-batch results and a per-batch retry, which no
# queue or pool library models; the whole protocol is a lock, a list and an Event per caller.


@dataclass(eq=False)
class _GroupWaiter:
    """One caller's batch in the queue, and what the leader of its group sends back."""

    batch: PreparedReadings
    woken: threading.Event = field(default_factory=threading.Event)
    result: IngestResult | None = None
    error: BaseException | None = None
    lead: bool = False  # promoted: this caller stores the next group
    alone: bool = False  # its group failed: this caller stores its batch in a transaction of its own


class ReadingsGroupCommit:
    """Joins concurrent callers of one process into one `readings_store` transaction.

    The first caller becomes the leader: it takes every batch queued so far (its own included)
    and stores them together on its own connection; whoever queues meanwhile waits, and once the
    group has committed the first of them leads the next group with everything queued by then. A
    group therefore grows with the load and costs no added wait: alone, a caller is a group of
    one and runs today's path. Waiting callers never touch their own connection, so no caller's
    request runs inside another's open transaction.

    If a group of several fails, its transaction is rolled back whole and every member stores
    its batch again on its own (in its own thread), so one bad batch fails only its own caller.
    Once committed, every member gets its result, even if after-commit work then fails.
    """

    def __init__(self, *, source: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._queue: list[_GroupWaiter] = []
        self._leading = False

    def ingest(self, batch: PreparedReadings) -> IngestResult:
        waiter = _GroupWaiter(batch=batch)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._leading
            self._leading = True
        if not lead:
            waiter.woken.wait()
            if not waiter.lead:
                return self._outcome(waiter)
        self._lead(own=waiter)
        return self._outcome(waiter)

    def _outcome(self, waiter: _GroupWaiter) -> IngestResult:
        if waiter.alone:
            return store.readings_store(batches=[waiter.batch], source=self.source)[0]
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _lead(self, *, own: _GroupWaiter) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        results: list[IngestResult] | None = None
        handed_off = False

        def hand_off(results: list[IngestResult] | None, error: BaseException | None) -> None:
            # The next caller leads and every member is woken, once, whatever happened (even a
            # worker being killed mid-store): nobody waits on a leader that is gone.
            nonlocal handed_off
            if handed_off:
                return
            handed_off = True
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._leading = False
            for index, waiter in enumerate(group):
                if results is not None:
                    waiter.result = results[index]
                elif waiter is own and (len(group) == 1 or not isinstance(error, Exception)):
                    # Its own batch alone failed, or its thread is being stopped (SystemExit…).
                    waiter.error = error
                else:
                    waiter.alone = True
                waiter.woken.set()

        try:
            with transaction.atomic():
                # Registered before the store's own hooks, so it runs first after COMMIT: the
                # members answer and the next group stores while this thread still runs the
                # group's after-commit work (event fan-out, rollup refresh).
                transaction.on_commit(lambda: hand_off(results, None))
                results = store.readings_store(batches=[waiter.batch for waiter in group], source=self.source)
        except BaseException as exc:
            if not handed_off:
                hand_off(None, exc)
            elif isinstance(exc, Exception):
                # Committed and answered; only after-commit work failed.
                logger.exception("after-commit work of a readings group failed")
            else:
                raise


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
