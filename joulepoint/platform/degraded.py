"""Redis outages on the device path: what counts as one, how it is logged, and the 503 for a
write that cannot keep its promise without the shared cache (docs/deploy.md, "When Redis is down").

Redis holds only what PostgreSQL can rebuild (cached device rows, rate-limit counters, the
listeners' epoch), so a device request goes on without it: authenticated from the database,
rate-limited per process. Writes that must reach every process at once (a rotated key must stop
working everywhere) refuse with 503 and Retry-After instead of promising what they cannot.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

logger = logging.getLogger("joulepoint.degraded")

# redis-py's own errors, and the OS's when a connection is refused or reset under it.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
# A process logs an outage at most this often, with the count of what it skipped in between: a
# Redis outage under load would otherwise write one line per request.
LOG_EVERY_SECONDS = 30.0
RETRY_AFTER_SECONDS = 5

_lock = threading.Lock()
_last_logged: dict[str, float] = {}
_skipped: dict[str, int] = {}


class SharedCacheUnavailable(Exception):
    """The shared cache (Redis) is unreachable and this write needs it; the caller answers 503."""

    retry_after = RETRY_AFTER_SECONDS


def redis_outage_log(what: str, error: BaseException) -> None:
    """Log that `what` went on without Redis (at most once per LOG_EVERY_SECONDS per `what`)."""
    now = time.monotonic()
    with _lock:
        last = _last_logged.get(what)
        if last is not None and now - last < LOG_EVERY_SECONDS:
            _skipped[what] = _skipped.get(what, 0) + 1
            return
        _last_logged[what] = now
        skipped = _skipped.pop(what, 0)
    logger.warning(
        "Redis unavailable (%s: %s): %s (%d more since the last warning)",
        type(error).__name__,
        error,
        what,
        skipped,
    )
