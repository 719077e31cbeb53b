"""Whether anyone listens: answers kept in each process while the listeners' epoch stands.

After every commit the ingest path asks its subscribers whether the event concerns anybody:
does the organization have rules for this key (automations), is any dashboard or device socket
in this group (energy.live). Each answer lives in Redis, shared by every process, and asking
cost a round trip per question and per ingest group: with two questions, a large share of a
single reading's server CPU under load (docs/perf-history.md).

Here a process keeps the answers it looked up, under one shared epoch: a counter in the cache
that every change of who listens (a rule saved or deleted, a group joined or left) increments
once it is in effect. An epoch other than the one the answers were kept under drops them all,
and an answer looked up while they were dropped is not kept. So whoever reads the epoch after
a change completed sees that change, as a direct lookup would have. Answers also age out after
`MAX_AGE_SECONDS`, which bounds what a change made without telling (a queryset update, a row
edited in SQL) leaves behind, as the shared entries' own expiry does.

Who reads the epoch: a device request, in its authentication's round trip
(`listeners_epoch_seen`), so the fan-out after its commit asks Redis nothing; that covers the
requests a group commit stores together, which all authenticated before they were stored. Any
other fan-out reads it once, whatever the number of events and questions.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable
from contextvars import ContextVar

from django.core.cache import cache

from joulepoint.events.services import fan_out_memo
from joulepoint.platform.degraded import REDIS_ERRORS, redis_outage_log

EPOCH_KEY = "jp:listeners:epoch"
MAX_AGE_SECONDS = 30.0
# A bound on memory, not an expected size: answers are per organization and event key, and per
# site or device group, and all are dropped at every epoch.
MAX_ANSWERS = 10_000
_OBSERVED = "listeners-epoch-observed"
# Whether the request this context serves read the epoch as it began (reset as every request
# starts and finishes: a server thread's context outlives its requests).
_request_observed: ContextVar[bool] = ContextVar("listeners_epoch_observed", default=False)


class _Answers:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch: object = None
        self.generation = 0  # counts the times the answers were dropped
        self.answers: dict[Hashable, tuple[bool, float]] = {}

    def observe(self, epoch: object) -> None:
        with self.lock:
            if epoch != self.epoch:
                self.epoch = epoch
                self.generation += 1
                self.answers.clear()


_answers = _Answers()


def listeners_changed() -> None:
    """Tell every process that who listens has changed; call once the change is in effect
    (committed, joined). Costs one or two cache round trips; changes are rare."""
    try:
        cache.incr(EPOCH_KEY)
    except ValueError:  # never set, or lost with the cache: any new value differs from the kept one
        _epoch_start()
    except REDIS_ERRORS as error:
        # Other processes' answers age out within MAX_AGE_SECONDS; a Redis back without its data
        # gives a new epoch, which drops them at once.
        redis_outage_log("a change of listeners told no other process", error)


def _epoch_start() -> object:
    # Random rather than 1: an epoch lost with the cache (a restart, cache.clear()) must not come
    # back as a value some process still keeps its answers under. Whoever adds first wins.
    try:
        cache.add(EPOCH_KEY, random.getrandbits(62), timeout=None)
        return cache.get(EPOCH_KEY)
    except REDIS_ERRORS as error:
        return _epoch_unknown(error)


def _epoch_unknown(error: BaseException) -> object:
    """Redis unreachable: an epoch equal to no other, so no kept answer is trusted and each
    question is looked up directly until Redis answers again."""
    redis_outage_log("listener answers looked up without the shared epoch", error)
    return object()


def _observe(epoch: object) -> None:
    _answers.observe(epoch if epoch is not None else _epoch_start())


def listeners_epoch_observe() -> None:
    """Read the shared epoch and drop this process's answers if it moved."""
    try:
        epoch = cache.get(EPOCH_KEY)
    except REDIS_ERRORS as error:
        epoch = _epoch_unknown(error)
    _observe(epoch)


def listeners_epoch_seen(epoch: object) -> None:
    """The epoch as a request read it at its start, with something else it needed (a device
    request's authentication): the fan-out after this request's commit needs no read of its own."""
    _observe(epoch)
    _request_observed.set(True)


def request_boundary(**kwargs) -> None:
    """request_started and request_finished receiver."""
    _request_observed.set(False)


def listener_answer(question: Hashable, look_up: Callable[[], bool]) -> bool:
    """The answer to `question`, kept by this process while the epoch stands; `look_up()` finds
    it on a miss (and may raise, keeping nothing). The epoch is read unless this request read it
    as it began; within one fan-out of transient events, once."""
    memo = fan_out_memo()
    if not _request_observed.get() and (memo is None or _OBSERVED not in memo):
        listeners_epoch_observe()
        if memo is not None:
            memo[_OBSERVED] = True
    now = time.monotonic()
    kept = _answers.answers.get(question)
    if kept is not None and now - kept[1] < MAX_AGE_SECONDS:
        return kept[0]
    generation = _answers.generation
    answer = bool(look_up())
    with _answers.lock:
        if _answers.generation == generation:
            if len(_answers.answers) >= MAX_ANSWERS:
                _answers.answers.clear()
            _answers.answers[question] = (answer, now)
    return answer
