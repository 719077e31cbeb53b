"""Sending a task's webhooks: one after another, or side by side on threads once they are slow."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from automations.deliveries.actions.base import Outcome
from automations.deliveries.actions.registry import handler_for
from automations.deliveries.enqueue import ENQUEUE_CHUNK
from automations.models import Delivery


def webhooks_send(deliveries: list[Delivery]) -> dict[int, Outcome]:
    """Send a task's webhooks one after another while the receivers answer quickly; once the
    task's sends have taken AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS in all, send the rest side by side
    on the sender threads.

    Why not always threads: against a fast receiver an attempt costs little CPU, and 25 threads
    taking turns on the GIL cost several times more per delivery than sending one by one (the
    figures are in docs/automations.md, "Throughput"); on a busy worker host that CPU is what
    caps deliveries/s. Why threads at all: when receivers are slow (or time out), waiting
    dominates and threads are cheap, so 25 slow receivers cost about one wait instead of 25. The
    budget is a sum, not a per-attempt limit, so one attempt delayed by a busy host does not
    switch a task of fast receivers to threads."""
    outcomes: dict[int, Outcome] = {}
    handler = handler_for("webhook")
    budget = settings.AUTOMATIONS_WEBHOOK_SEQUENTIAL_MS / 1000
    started = time.perf_counter()
    for index, delivery in enumerate(deliveries):
        outcomes[delivery.pk] = handler.execute(delivery)
        rest = deliveries[index + 1 :]
        if rest and time.perf_counter() - started > budget:
            for other, outcome in zip(rest, _sender_pool().map(handler.execute, rest), strict=True):
                outcomes[other.pk] = outcome
            break
    return outcomes


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def _sender_pool() -> ThreadPoolExecutor:
    """Threads that send one task's webhooks side by side; one pool per (forked) process."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=ENQUEUE_CHUNK, thread_name_prefix="webhook")
        _pool_pid = os.getpid()
    return _pool
