"""Group commit: concurrent callers of one process joined into one database transaction.

When many threads each commit a small write that must wait for the WAL flush, and especially
when they serialize on one row lock held until that flush, the flush is what bounds the rate.
Joining the callers that arrive while a transaction is being committed into the next one pays
one flush for the whole group.

Hand-written rather than taken from a library: what is grouped is a Django transaction on the
calling thread's own connection, with per-caller results and a per-caller retry, which no queue
or pool library models; the protocol is a lock, a list and an Event per caller. It follows
energy.ingest.group_commit (readings), which keeps its own variant (its group of one reports its
error instead of running again).
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
    item: Any
    woken: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    lead: bool = False  # promoted: this caller commits the next group
    alone: bool = False  # its group failed: this caller runs `alone` in its own thread


class GroupCommit(Generic[Item, Result]):
    """`submit(item)` answers `store([items])[i]` for the caller's item, where `store` ran in
    one transaction with the items of every caller queued meanwhile (at most `limit`).

    The first caller leads: it takes the queue, runs `store` in a transaction on its own
    connection and, once committed, wakes every member with its result and promotes the first
    caller queued meanwhile to lead the next group. Alone, a caller is a group of one: no added
    wait. Waiting callers never touch their own connection. If the group's transaction fails,
    it is rolled back whole and every member runs `alone(item)` in its own thread instead, so
    `store` may raise to mean "decide these one by one". Callers must not be inside a
    transaction (it would commit or roll back with others'); they take `alone` themselves.
    """

    def __init__(self, *, store: Callable[[list[Item]], list[Result]], alone: Callable[[Item], Result],
                 limit: int = 128) -> None:  # fmt: skip
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
        self._lead()
        return self._outcome(waiter)

    def _outcome(self, waiter: _Waiter) -> Result:
        return self._alone(waiter.item) if waiter.alone else waiter.result

    def _lead(self) -> None:
        with self._lock:
            group, self._queue = self._queue[: self._limit], self._queue[self._limit :]
        results: list | None = None
        try:
            with transaction.atomic():
                stored = self._store([waiter.item for waiter in group])
            results = stored  # only once COMMIT returned
        except Exception:
            logger.debug("a group of %d failed; its members run alone", len(group), exc_info=True)
        finally:
            # Whatever happened (even the thread being stopped), the next caller leads and every
            # member is woken once: nobody waits on a leader that is gone.
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._leading = False
            for index, waiter in enumerate(group):
                if results is None:
                    waiter.alone = True
                else:
                    waiter.result = results[index]
                waiter.woken.set()
