"""MLOps costs on PostgreSQL and Redis: anomaly inference, its cost to ingest, a dataset build,
in this process and through real Celery workers on the `inference` and `ml` queues.

    REDIS_URL=redis://127.0.0.1:6379/15 python -m bench.ml     # 20 rounds, 1,000-reading batches
    python -m bench.ml --rounds 40 --build-days 365 --redis-url redis://127.0.0.1:6379/15
    python -m bench.ml --no-worker                              # figures 1-3 only, no broker

Creates its own database (`jp_bench_ml` on 127.0.0.1:5432, user postgres; dropped at the end,
no other database is touched) and migrates it. The Redis database of `--redis-url` (default
REDIS_URL) is its broker and cache: give it one nobody else uses, since the bench purges its
`inference`, `ml` and `default` queues before and after. Figures, each with its baseline from
this run:

1. inference: `mlops.inference.scoring.batches_score` of one batch at a time (the `inference`
   worker's service: plan, features, one onnxruntime run per model version, InferenceRun rows,
   ml.inference/anomaly.detected in the outbox) on batches of 1,000 readings from 50 meters with
   one production model on their site, against onnxruntime's `run` on the same input arrays
   directly. Target ratio >= 0.5.
2. ingest: `reading_batch_ingest` of the same batches with that model served (the subscriber
   asks whether anyone serves and sends the batch to the broker's `inference` queue: the web
   process's share) against mlops' subscriber not installed, alternating round by round.
   Target ratio >= 0.9 (inference is off the ingest transaction). With --no-worker the send is
   a no-op (no broker).
3. build: a dataset of `--build-meters` meters x `--build-days` of 15-minute rollups (written
   directly with COPY), built with every feature. Target under 10 s for 50 meters x a year.
4. inference through the worker: a real `celery worker -Q inference --concurrency 1
   --prefetch-multiplier 32` (the Procfile's `inference` process) started by the bench on the
   same database and broker. Each round's batch is sent as the subscriber sends it
   (`mlops.batch_score` with the data.ingested message) and is done when its InferenceRun row
   exists: the latency of one batch alone (send → scored and recorded, events in the outbox),
   then the throughput of all rounds sent back to back (the worker scores the batches that queue
   up while it works together, up to 16 per run), against onnxruntime's `run` on the burst's
   arrays one batch at a time, measured right after it (the load of a shared machine moves
   between figure 1 and figure 4). Target ratio >= 0.5.
5. build through the worker: the same dataset as figure 3 built again by the `ml` worker
   (request → ready, polled every 50 ms), against figure 3's in-process build time.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.database import database_create, database_drop

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "jp_bench_ml"
T0 = datetime(2025, 10, 6, tzinfo=UTC)


def load_w(minutes: np.ndarray, rng) -> np.ndarray:
    hours = (minutes / 60.0) % 24
    return 3500 + 1500 * np.cos(2 * np.pi * (hours - 12) / 24) + rng.normal(0, 60, len(minutes))


def setup(meters_count: int):
    import pandas as pd

    from energy.models import Meter, Site
    from joulepoint.tenancy.models import Organization
    from mlops.models import Assignment
    from mlops.registry.services import model_create, model_version_register, promotion_create
    from mlops.training.anomaly import anomaly_train

    org = Organization.objects.create(name="Bench ML", slug="bench-ml")
    site = Site.objects.create(organization=org, name="Bench site", timezone="UTC")
    meters = [
        Meter.objects.create(organization=org, site=site, name=f"m{i}", serial=f"BENCH-{i}", kind="load")
        for i in range(meters_count)
    ]
    rng = np.random.default_rng(0)
    minutes = np.arange(0, 7 * 24 * 60, 15)
    frame = pd.DataFrame({"total_power": load_w(minutes, rng), "local_hour": (minutes // 60) % 24})
    trained = anomaly_train(frame, {"n_estimators": 50})
    model = model_create(organization=org, name="Bench anomalies", purpose="anomaly")
    version = model_version_register(
        model=model, onnx=trained.onnx, trainer="bench", params=trained.params, metrics=trained.metrics,
        features=trained.features, threshold=trained.threshold,
    )  # fmt: skip
    assignment = Assignment.objects.create(organization=org, model=model, purpose="anomaly", site=site)
    promotion_create(organization=org, assignment=assignment, alias="production", version=version)
    return org, site, meters, version, assignment, promotion_create


def readings(meters, start: datetime, size: int, rng) -> list[dict]:
    """`size` readings spread over the meters, one per meter per second, a few outliers."""
    out = []
    for i in range(size):
        meter = meters[i % len(meters)]
        ts = start + timedelta(seconds=i // len(meters))
        power = float(load_w(np.array([ts.hour * 60 + ts.minute]), rng)[0])
        if i % 500 == 7:
            power *= 15  # an outlier now and then
        out.append({"meter_id": meter.pk, "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "total_power": power})
    return out


def input_arrays(batches: list[list[dict]], version) -> list[np.ndarray]:
    """The onnxruntime input of each batch, as the worker builds it (the bench's site is UTC)."""
    from zoneinfo import ZoneInfo

    from mlops.features import local_hour_circle, readings_point_matrix

    zone = ZoneInfo("UTC")

    def circles(batch: list[dict]) -> np.ndarray:
        stamps = [datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in batch]
        return np.asarray([local_hour_circle(stamp, zone) for stamp in stamps])

    return [readings_point_matrix(batch, circles(batch), version.features)[0] for batch in batches]


def direct_rate(version, arrays: list[np.ndarray]) -> float:
    """onnxruntime's `run` on the arrays in this process: the median readings/s of a batch."""
    from mlops.inference.sessions import session_for

    session, input_name = session_for(version_id=version.pk, artifact=version.artifact)
    rates = []
    for array in arrays:
        started = time.perf_counter()
        session.run(None, {input_name: array})
        rates.append(len(array) / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_inference(args, org, meters, version) -> tuple[float, float]:
    from joulepoint.events.types import Event
    from mlops.inference.scoring import batches_score
    from mlops.inference.sessions import session_for

    rng = np.random.default_rng(1)
    batches = [readings(meters, T0 + timedelta(hours=r), args.batch, rng) for r in range(args.rounds)]
    session, input_name = session_for(version_id=version.pk, artifact=version.artifact)
    arrays = input_arrays(batches, version)
    direct, worker = [], []
    for batch, array in zip(batches, arrays, strict=True):
        started = time.perf_counter()
        session.run(None, {input_name: array})
        direct.append(len(array) / (time.perf_counter() - started))
        event = Event(organization_id=org.pk, key="data.ingested", payload={"readings": batch}, source="bench",
                      occurred_at=T0)  # fmt: skip
        started = time.perf_counter()
        batches_score(events=[event])
        worker.append(len(batch) / (time.perf_counter() - started))
    d, w = statistics.median(direct), statistics.median(worker)
    print(f"inference: onnxruntime run directly {d:,.0f} readings/s; worker path (batches_score) {w:,.0f} readings/s")
    print(f"inference: ratio worker/direct {w / d:.3f} (target >= 0.5: {'PASS' if w / d >= 0.5 else 'FAIL'})")
    return w / d, d


def bench_ingest(args, org, site, meters, version, assignment, promotion_create) -> float:
    from energy.ingest.store import reading_batch_ingest
    from energy.models import Gateway
    from joulepoint.events.services import subscribe, unsubscribe
    from mlops import tasks
    from mlops.inference.scoring import on_event

    gateway = Gateway.objects.create(organization=org, site=site, name="bench gateway")
    queued = []
    send = tasks.batch_score_task.delay

    def counted_send(message):
        queued.append(1)
        if args.worker:
            send(message)  # to the broker; purged before the worker starts

    tasks.batch_score_task.delay = counted_send
    rng = np.random.default_rng(2)
    rates = {"off": [], "on": []}
    for r in range(args.rounds):
        for mode in ("off", "on"):
            # Inference off = mlops' data.ingested subscriber not installed; the model stays served.
            if mode == "on":
                subscribe(on_event, keys=["data.ingested"])
            else:
                unsubscribe(on_event)
            batch = readings(meters, T0 + timedelta(days=10 + r, hours=1 if mode == "on" else 0), args.batch, rng)
            started = time.perf_counter()
            reading_batch_ingest(device=gateway, items=batch, source="bench")
            rates[mode].append(len(batch) / (time.perf_counter() - started))
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"ingest: no model {off:,.0f} readings/s; anomaly model on every meter {on:,.0f} readings/s "
          f"({len(queued)} batches queued)")  # fmt: skip
    print(f"ingest: ratio on/off {on / off:.3f} (target >= 0.9: {'PASS' if on / off >= 0.9 else 'FAIL'})")
    tasks.batch_score_task.delay = send
    unsubscribe(on_event)
    subscribe(on_event, keys=["data.ingested"])
    return on / off


def bench_build(args, org, site):
    from django.db import connection

    from energy.models import Meter
    from mlops.datasets.services import dataset_build_request, dataset_create, dataset_version_build

    meters = [
        Meter.objects.create(organization=org, site=site, name=f"b{i}", serial=f"BUILD-{i}", kind="load")
        for i in range(args.build_meters)
    ]
    steps = args.build_days * 96
    rng = np.random.default_rng(3)
    minutes = np.arange(steps) * 15
    with connection.cursor() as cursor:
        table = "energy_readingrollup15m"
        with cursor.copy(f"COPY {table} (meter_id, ts, n, total_power_avg) FROM STDIN") as copy:
            for meter in meters:
                values = load_w(minutes, rng)
                for i in range(steps):
                    copy.write_row((meter.pk, T0 + timedelta(minutes=int(minutes[i])), 15, float(values[i])))
    dataset = dataset_create(
        organization=org, name="bench", meters=meters, fields=["total_power"],
        features=["local_hour", "weekday", "holiday", "rolling_mean_1h", "rolling_mean_24h", "lag_1d", "lag_1w"],
        start=T0, end=T0 + timedelta(days=args.build_days), holiday_country="DE",
    )  # fmt: skip
    from mlops import tasks

    send = tasks.dataset_version_build_task.delay
    tasks.dataset_version_build_task.delay = lambda *a: None  # built below, timed, not on commit
    version = dataset_build_request(dataset=dataset)
    tasks.dataset_version_build_task.delay = send
    started = time.perf_counter()
    version = dataset_version_build(version_id=version.pk)
    seconds = time.perf_counter() - started
    print(f"build: {args.build_meters} meters x {args.build_days} days of 15-minute rollups = {version.row_count:,} "
          f"rows, {version.size_bytes / 1e6:.1f} MB Parquet in {seconds:.1f} s ({version.status}) "
          f"(target under 10 s for 50 x 365: {'PASS' if seconds < 10 else 'FAIL'})")  # fmt: skip
    return dataset, seconds


class Worker:
    """A real Celery worker on `queue`, as the Procfile's process of that name runs it (one
    process, its prefetch), on the bench's database, broker and media root; its output goes to
    a file shown if it dies."""

    def __init__(self, args, queue: str, prefetch: int):
        self.hostname = f"bench-{queue}-{os.getpid()}@{socket.gethostname()}"
        self.log = open(f"/tmp/{args.database}-{queue}-worker.log", "w")  # noqa: SIM115
        command = [sys.executable, "-m", "celery", "-A", "joulepoint", "worker", "-Q", queue, "--concurrency", "1",
                   "--prefetch-multiplier", str(prefetch), "--hostname", self.hostname, "-l", "info",
                   "--without-gossip", "--without-mingle"]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=dict(os.environ), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 90.0) -> float:
        from joulepoint.celery import app

        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited: {Path(self.log.name).read_text()[-3000:]}")
            if app.control.ping(destination=[self.hostname], timeout=1.0):
                return time.perf_counter() - started
        raise RuntimeError(f"the worker did not answer a ping in {timeout:.0f} s")

    def task_seconds(self, task_name: str) -> list[float]:
        """What the worker itself logged each run of `task_name` took (Celery's "succeeded in")."""
        pattern = re.compile(rf"Task {re.escape(task_name)}\[[^\]]+\] succeeded in ([0-9.]+)s")
        self.log.flush()
        return [float(match) for match in pattern.findall(Path(self.log.name).read_text(errors="replace"))]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the parent: a warm shutdown finishes the task at hand
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.log.close()


def queues_purge() -> None:
    from joulepoint.celery import app

    with app.connection_for_write() as connection:
        for queue in ("ml", "inference", "default"):
            connection.default_channel.queue_purge(queue)


def _wait_for(check, timeout: float, poll: float) -> None:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"nothing after {timeout:.0f} s: is the worker consuming? see its log")
        time.sleep(poll)


def bench_worker_inference(args, org, meters, version, direct_before: float, worker: Worker) -> float:
    from joulepoint.events.types import Event
    from joulepoint.platform.enqueue import enqueue
    from mlops import taskqueue
    from mlops.models import InferenceRun

    rng = np.random.default_rng(4)
    events = [
        Event(organization_id=org.pk, key="data.ingested", source="bench", occurred_at=T0, id=uuid.uuid4(),
              payload={"readings": readings(meters, T0 + timedelta(days=100, hours=r), args.batch, rng)})
        for r in range(args.rounds + args.latency_rounds)
    ]  # fmt: skip

    def scored(batch: list) -> bool:
        return InferenceRun.objects.filter(event_id__in=[str(e.id) for e in batch], alias="production").count() == len(
            batch
        )

    # The first batch also warms the worker (its onnxruntime session and serving plan).
    enqueue(taskqueue.BATCH_SCORE, events[0].as_dict())
    _wait_for(lambda: scored(events[:1]), 60, 0.005)
    latencies = []
    for event in events[1 : args.latency_rounds]:
        started = time.perf_counter()
        enqueue(taskqueue.BATCH_SCORE, event.as_dict())
        _wait_for(lambda event=event: scored([event]), 60, 0.01)
        latencies.append((time.perf_counter() - started) * 1000)
    burst = events[args.latency_rounds :]
    started = time.perf_counter()
    for event in burst:
        enqueue(taskqueue.BATCH_SCORE, event.as_dict())
    _wait_for(lambda: scored(burst), 600, 0.02)
    rate = len(burst) * args.batch / (time.perf_counter() - started)
    inside = worker.task_seconds("mlops.batch_score")
    print(f"worker inference: one {args.batch:,}-reading batch alone, send -> scored and recorded: median "
          f"{statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms ({len(latencies)} batches)")  # fmt: skip
    runs = inside[args.latency_rounds :]  # the first ones: the warm-up and the batches sent alone
    if runs:
        print(f"worker inference: the burst's {len(burst)} batches in {len(runs)} runs (the worker's log; "
              f"{len(burst) / len(runs):.1f} batches per run); the runs themselves took {sum(runs) * 1000:.0f} ms, "
              f"{sum(runs) * 1000 / len(burst):.1f} ms per batch = {len(burst) * args.batch / sum(runs):,.0f} "
              f"readings/s; the rest is the broker, the hand-over to the pool process and this "
              f"process's polling")  # fmt: skip
    # The baseline again, on the burst's own arrays right after it: on a shared machine the load
    # moves between figure 1 and now, and a ratio is only fair against a baseline of the moment.
    direct_after = direct_rate(version, input_arrays([event.payload["readings"] for event in burst], version))
    ratio = rate / direct_after
    print(f"worker inference: {len(burst)} batches back to back {rate:,.0f} readings/s; onnxruntime run directly "
          f"right after {direct_after:,.0f} readings/s (figure 1: {direct_before:,.0f}); ratio {ratio:.3f} "
          f"(target >= 0.5: {'PASS' if ratio >= 0.5 else 'FAIL'})")  # fmt: skip
    return ratio


def bench_worker_build(dataset, in_process_seconds: float) -> float:
    from mlops.datasets.services import dataset_build_request
    from mlops.models import DatasetVersion

    started = time.perf_counter()
    version = dataset_build_request(dataset=dataset)  # queued on commit (autocommit: at once)
    done = (DatasetVersion.Status.READY, DatasetVersion.Status.FAILED)
    _wait_for(lambda: DatasetVersion.objects.get(pk=version.pk).status in done, 600, 0.05)
    seconds = time.perf_counter() - started
    version.refresh_from_db()
    print(f"worker build: the same dataset built by the worker, request -> {version.status} in {seconds:.1f} s; "
          f"in this process {in_process_seconds:.1f} s; ratio {seconds / in_process_seconds:.2f} "
          f"(target under 10 s: {'PASS' if seconds < 10 else 'FAIL'})")  # fmt: skip
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--build-meters", type=int, default=50)
    parser.add_argument("--build-days", type=int, default=365)
    parser.add_argument("--database", default=DEFAULT_DB)
    parser.add_argument("--latency-rounds", type=int, default=10, help="batches sent one at a time (figure 4)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="broker and cache (default REDIS_URL)")
    parser.add_argument("--no-worker", dest="worker", action="store_false", help="in-process figures only")
    args = parser.parse_args()
    if args.worker and not args.redis_url:
        parser.error("a worker needs a broker: set REDIS_URL or --redis-url (or run with --no-worker)")
    database_create(args.database)
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    os.environ.pop("CELERY_BROKER_URL", None)
    if args.worker:
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "joulepoint.settings")
    os.environ.setdefault("MEDIA_ROOT", f"/tmp/{args.database}-media")
    sys.path.insert(0, str(ROOT))
    workers = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        # What a worker would do after commit (rollup refresh, outbox dispatch) is not measured
        # here: their sends are no-ops, in both modes alike.
        import energy.analytics.tasks as rollup_tasks
        import joulepoint.events.tasks as outbox_tasks

        rollup_tasks.rollups_refresh_pending_task.delay = lambda *a, **k: None
        outbox_tasks.outbox_dispatch_one.delay = outbox_tasks.outbox_dispatch_many.delay = lambda *a, **k: None
        if args.worker:
            queues_purge()
        org, site, meters, version, assignment, promote = setup(args.meters)
        _ratio, direct_rate = bench_inference(args, org, meters, version)
        bench_ingest(args, org, site, meters, version, assignment, promote)
        dataset, build_seconds = bench_build(args, org, site)
        if args.worker:
            queues_purge()  # figure 2's sends: the worker starts on an empty queue
            workers = [Worker(args, "inference", prefetch=32), Worker(args, "ml", prefetch=4)]
            for worker in workers:
                print(f"worker: {worker.hostname} answered a ping after {worker.wait_ready():.1f} s")
            bench_worker_inference(args, org, meters, version, direct_rate, workers[0])
            bench_worker_build(dataset, build_seconds)
        return 0
    finally:
        for worker in workers:
            worker.stop()
        if workers:
            queues_purge()
        from django.db import connections

        connections.close_all()
        database_drop(args.database)


if __name__ == "__main__":
    raise SystemExit(main())
