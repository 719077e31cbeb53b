"""Celery tasks whose queued messages a worker runs together: `base=CoalescedTask`.

A worker hands such a task's messages to its pool one by one while a pool process is free, as
for any task; while every process is busy, the messages that arrive wait and the next free
process runs them all at once (up to `coalesce_max`), with every message's positional arguments
in one call. So a message alone waits for nothing, and under load the per-run costs (the hand-over
to the pool process, a transaction, a model run) are paid once per group instead of once per
message: the deeper the queue, the larger the groups.

The task takes `*args` and must treat a call with the arguments of several messages as those
messages run one after the other (positional arguments only). Each message keeps its own life in
the worker: it is acknowledged, failed, given back on a lost pool process
(task_reject_on_worker_lost) or timed out exactly as its group's run is, through Celery's own
request callbacks. The run logs and traces as its first message (its task id); a result is not
kept per message, so such a task returns nothing anyone waits for. Messages with an ETA or a rate
limit run alone, as Celery schedules them; in-process (eager) calls run one message, as usual. A
group is limited by `coalesce_max`; the worker's prefetch (prefetch multiplier x concurrency)
bounds how many messages can wait, so set it above `coalesce_max` to let the broker fill the next
group while one runs.

Written here because the library for this, celery-batches, supports Celery < 5.7 only and
flushes on a timer (a message alone waits up to its flush interval); this is the part of it we
need, on Celery's public Task.start_strategy and its default strategy.
"""

from __future__ import annotations

import threading
from weakref import ref

from celery import Task, current_app
from celery.app.trace import trace_task_ret
from kombu.serialization import loads, prepare_accept_content


def coalesced_trace(name: str, task_id: str, request: dict, bodies: list[tuple]) -> tuple:
    """Run in the pool process: one traced run of task `name` with the positional arguments of
    every message body, in order (Celery's tracer: signals, logging, time limits, result). The
    run is the first message's (its id and request; callbacks and chains are not coalesced)."""
    app = current_app._get_current_object()
    accept = prepare_accept_content(app.conf.accept_content)
    decoded = [loads(body, content_type, encoding, accept=accept) for body, content_type, encoding in bodies]
    if any(kwargs for _args, kwargs, _embed in decoded):
        raise TypeError(f"{name} coalesces messages with positional arguments only")
    args = tuple(arg for message_args, _kwargs, _embed in decoded for arg in message_args)
    return trace_task_ret(name, task_id, request, (args, {}, decoded[0][2]), None, None, app=app)


class _Group:
    """The requests one pool job runs: every callback of the job is every request's callback."""

    def __init__(self, coalescer: _Coalescer, requests: list) -> None:
        self.coalescer = coalescer
        self.requests = requests
        self.done = False

    def accepted(self, pid: int, time_accepted: float) -> None:
        for request in self.requests:
            request.on_accepted(pid, time_accepted)

    def timed_out(self, soft: bool, timeout: float) -> None:
        for request in self.requests:
            request.on_timeout(soft, timeout)

    def succeeded(self, failed__retval__runtime: tuple, **kwargs) -> None:
        try:
            for request in self.requests:
                request.on_success(failed__retval__runtime, **kwargs)
        finally:
            self._finish()

    def failed(self, exc_info, **kwargs) -> None:
        # The pool lost the process (WorkerLostError) or a hard time limit killed it.
        try:
            for request in self.requests:
                request.on_failure(exc_info, **kwargs)
        finally:
            self._finish()

    def _finish(self) -> None:
        if not self.done:
            self.done = True
            self.coalescer.finished()


class _Coalescer:
    """One per worker and task: the requests waiting for a free pool process."""

    def __init__(self, task: CoalescedTask, pool) -> None:
        self.task = task
        self.pool = pool
        self.lock = threading.Lock()  # callbacks come from pool threads with the threads pool
        self.waiting: list = []
        self.running = 0

    def handle(self, request) -> None:
        with self.lock:
            self.waiting.append(request)
        self.submit()

    def finished(self) -> None:
        with self.lock:
            self.running -= 1
        self.submit()

    def submit(self) -> None:
        with self.lock:
            if not self.waiting or self.running >= max(self.pool.num_processes or 1, 1):
                return
            group = self.waiting[: self.task.coalesce_max]
            del self.waiting[: self.task.coalesce_max]
            self.running += 1
        run = _Group(self, [request for request in group if not request.revoked()])
        if not run.requests:
            run._finish()
            return
        first = run.requests[0]
        time_limit, soft_time_limit = first.time_limits
        result = self.pool.apply_async(
            coalesced_trace,
            args=(
                first.type,
                first.id,
                first.request_dict,
                [(request.body, request.content_type, request.content_encoding) for request in run.requests],
            ),
            accept_callback=run.accepted,
            timeout_callback=run.timed_out,
            callback=run.succeeded,
            error_callback=run.failed,
            soft_timeout=soft_time_limit or self.task.soft_time_limit,
            timeout=time_limit or self.task.time_limit,
            correlation_id=first.id,
        )
        for request in run.requests:
            # What Request.execute_using_pool keeps, so revoke(terminate=True) reaches the job.
            request._apply_result = ref(result) if result is not None else None


class _HandingTo:
    """The worker's consumer as the default strategy sees it, but handing task requests to a
    coalescer instead of straight to the pool."""

    def __init__(self, consumer, handle) -> None:
        self._consumer = consumer
        self.on_task_request = handle

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)


class CoalescedTask(Task):
    #: the most messages one run takes
    coalesce_max = 16

    def start_strategy(self, app, consumer, **kwargs):
        # Celery's default strategy does everything for each message (revoked, expired, ETA,
        # rate limits, events, reserving) and ends by handing the request on: to us.
        coalescer = _Coalescer(self, consumer.pool)
        return super().start_strategy(app, _HandingTo(consumer, coalescer.handle), **kwargs)
