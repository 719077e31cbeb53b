"""Group commit: concurrent callers of one process joined into one database transaction.

When many threads each commit a small write that must wait for the WAL flush, and especially
when they serialize on one row lock held until that flush, the flush is what bounds the rate.
Joining the callers that arrive while a transaction is being committed into the next one pays
one flush for the whole group. Users: single-reading ingest (energy.ingest.group_commit) and
the wallet ledger (billing.wallets).

Hand-written rather than taken from a library: what is grouped is a Django transaction on the
calling thread's own connection, with per-caller results and a per-caller retry, which no queue
or pool library models; the protocol is a lock, a list and an Event per caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.db import transaction

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Waiter:
    """One caller's item in the queue, and what the leader of its group sends back."""

    item: Any
    woken: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    lead: bool = False  # promoted: this caller commits the next group
    alone: bool = False  # its group of several failed: this caller runs `alone` in its own thread


class GroupCommit(Generic[Item, Result]):
    """`submit(item)` answers `store([items])[i]` for the caller's item, where `store` ran in
    one transaction with the items of every caller queued meanwhile (at most `limit`, or all).

    The first caller leads: it takes the queue and runs `store` in a transaction on its own
    connection; whoever queues meanwhile waits, and once the group has committed the first of
    them leads the next group with everything queued by then. A group grows with the load and
    costs no added wait: alone, a caller is a group of one and runs on its own thread. Waiting
    callers never touch their own connection, so no caller's work runs inside another's open
    transaction. Callers must not be inside a transaction (theirs would commit or roll back
    with others'); they take the ungrouped path themselves.

    - Committed is answered: the members are woken by the first on-commit hook, before any
      after-commit work `store` registered (events, refreshes) runs on the leader's thread, and
      keep their results even if that work then fails (it is logged).
    - A group of several that fails is rolled back whole and every member runs `alone(item)` in
      its own thread, so one bad item fails only its own caller (and `store` may raise to mean
      "decide these one by one").
    - A group of one that fails raises its error to its caller: running it alone would repeat it.
    - Whatever happens to the leader (even its thread being stopped), the next caller leads and
      every member is woken once: nobody waits on a leader that is gone.
    """

    def __init__(
        self,
        *,
        store: Callable[[list[Item]], list[Result]],
        alone: Callable[[Item], Result],
        limit: int | None = None,
    ) -> None:
        self._store = store
        self._alone = alone
        self._limit = limit
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._leading = False

    def submit(self, item: Item) -> Result:
        waiter = _Waiter(item=item)
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

    def _outcome(self, waiter: _Waiter) -> Result:
        if waiter.alone:
            return self._alone(waiter.item)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _lead(self, *, own: _Waiter) -> None:
        with self._lock:
            if self._limit is None:
                group, self._queue = self._queue, []
            else:
                group, self._queue = self._queue[: self._limit], self._queue[self._limit :]
        results: list | None = None
        handed_off = False

        def hand_off(results: list | None, error: BaseException | None) -> None:
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
                    # Its own item alone failed, or its thread is being stopped (SystemExit…).
                    waiter.error = error
                else:
                    waiter.alone = True
                waiter.woken.set()

        try:
            with transaction.atomic():
                # Registered before `store`'s own hooks, so it runs first after COMMIT: the members
                # answer and the next group starts while this thread runs the after-commit work.
                transaction.on_commit(lambda: hand_off(results, None))
                results = self._store([waiter.item for waiter in group])
        except BaseException as exc:
            if not handed_off:
                logger.debug("a group of %d failed", len(group), exc_info=True)
                hand_off(None, exc)
            elif isinstance(exc, Exception):
                logger.exception("after-commit work of a committed group failed")
            else:
                raise
