"""Fixed-window counters shared by every process: Redis when configured, else Django's cache.

With Redis, one pipelined INCR + EXPIRE is a single round trip; Django's cache API needs three
(`add`, then `incr`, which itself checks existence first), and the rate limit sits on the hot
path of every device request.
"""

from __future__ import annotations

import time
from functools import cache as memoize

import redis
from django.conf import settings
from django.core.cache import cache


@memoize
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def window_hit(key: str, *, window_seconds: int) -> tuple[int, float]:
    """Count one hit on `key` in the current window; returns (hits so far, seconds to the next window)."""
    now = time.time()
    window = int(now // window_seconds)
    window_key = f"ratelimit:{key}:{window}"
    ttl = window_seconds * 2
    if settings.REDIS_URL:
        pipe = _redis_client(settings.REDIS_URL).pipeline(transaction=False)
        pipe.incr(window_key)
        pipe.expire(window_key, ttl)
        count, _ = pipe.execute()
    elif cache.add(window_key, 1, ttl):
        count = 1
    else:
        try:
            count = cache.incr(window_key)
        except ValueError:  # expired between add and incr
            cache.add(window_key, 1, ttl)
            count = 1
    return count, (window + 1) * window_seconds - now
