"""onnxruntime sessions and serving plans, kept per process under a shared serving epoch.

Loading an ONNX model costs far more than scoring a batch, so each worker keeps its sessions
(per model version: a version's artifact never changes) and each organization's serving plan
(which version serves which meter under which alias). What serves changes with promotions:
each one increments a counter in the cache once committed (`serving_changed`), and a worker that
reads another value than the one its answers were kept under drops them all, as
joulepoint.events.listeners does for "does anyone listen". Plans also age out after
MAX_AGE_SECONDS, which bounds what a change made without telling (a group's members edited)
leaves behind. The epoch is random at start so one lost with the cache never comes back as a
value some process still keeps.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.core.cache import cache

from mlops.artifacts import artifact_read

if TYPE_CHECKING:
    import onnxruntime

EPOCH_KEY = "jp:mlops:serving:epoch"
MAX_AGE_SECONDS = 60.0


class _Kept:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch: object = None
        self.sessions: dict[int, tuple[onnxruntime.InferenceSession, str]] = {}
        self.plans: dict[int, tuple[dict, float]] = {}
        self.loads = 0  # sessions loaded by this process (tests and the benchmark read it)


_kept = _Kept()


def serving_changed() -> None:
    """Tell every process that what serves has changed (call once it is committed)."""
    try:
        cache.incr(EPOCH_KEY)
    except ValueError:
        cache.add(EPOCH_KEY, random.getrandbits(62), timeout=None)


def serving_observe() -> None:
    """Read the shared epoch; drop this process's sessions and plans if it moved."""
    epoch = cache.get(EPOCH_KEY)
    if epoch is None:
        cache.add(EPOCH_KEY, random.getrandbits(62), timeout=None)
        epoch = cache.get(EPOCH_KEY)
    with _kept.lock:
        if epoch != _kept.epoch:
            _kept.epoch = epoch
            _kept.sessions.clear()
            _kept.plans.clear()


def session_for(*, version_id: int, artifact: str) -> tuple[onnxruntime.InferenceSession, str]:
    """The session of a model version and its input name, loaded once per process and epoch."""
    kept = _kept.sessions.get(version_id)
    if kept is not None:
        return kept
    # Imported at the first load, not at the top: only processes that score need onnxruntime.
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one worker process per core scales better than threads
    session = onnxruntime.InferenceSession(artifact_read(artifact), options, providers=["CPUExecutionProvider"])
    kept = (session, session.get_inputs()[0].name)
    with _kept.lock:
        _kept.sessions[version_id] = kept
        _kept.loads += 1
    return kept


def plan_for(organization_id: int, look_up: Callable[[], dict]) -> dict:
    """The organization's serving plan, kept while the epoch stands and for MAX_AGE_SECONDS."""
    now = time.monotonic()
    kept = _kept.plans.get(organization_id)
    if kept is not None and now - kept[1] < MAX_AGE_SECONDS:
        return kept[0]
    plan = look_up()
    with _kept.lock:
        _kept.plans[organization_id] = (plan, now)
    return plan


def sessions_loaded() -> int:
    return _kept.loads
