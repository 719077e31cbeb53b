"""Fixed-window counters shared by every process: Redis when configured, else Django's cache.

While Redis is unreachable the counters are this process's own (a LocMemCache): the limit is
relaxed to its value per process, and the outage is logged (joulepoint.platform.degraded).

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
from django.core.cache.backends.locmem import LocMemCache

from joulepoint.platform.degraded import REDIS_ERRORS, redis_outage_log

# This process's counters while Redis is unreachable.
_local_counters = LocMemCache("joulepoint-ratelimit-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


@memoize
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def _window(key: str, window_seconds: int) -> tuple[str, int, float]:
    """(the counter of the current window, its TTL, seconds to the next window)."""
    now = time.time()
    window = int(now // window_seconds)
    return f"ratelimit:{key}:{window}", window_seconds * 2, (window + 1) * window_seconds - now


def window_hit(key: str, *, window_seconds: int) -> tuple[int, float]:
    """Count one hit on `key` in the current window; returns (hits so far, seconds to the next window)."""
    window_key, ttl, retry_after = _window(key, window_seconds)
    if settings.REDIS_URL:
        try:
            pipe = _redis_client(settings.REDIS_URL).pipeline(transaction=False)
            pipe.incr(window_key)
            pipe.expire(window_key, ttl)
            count, _ = pipe.execute()
        except REDIS_ERRORS as error:
            redis_outage_log("rate limits counted per process", error)
            return _count(_local_counters, window_key, ttl), retry_after
        return count, retry_after
    return _count(cache, window_key, ttl), retry_after


def _count(counters, window_key: str, ttl: int) -> int:
    if counters.add(window_key, 1, ttl):
        return 1
    try:
        return counters.incr(window_key)
    except ValueError:  # expired between add and incr
        counters.add(window_key, 1, ttl)
        return 1


def window_hit_and_cache_get(
    key: str, *, window_seconds: int, cache_keys: list[str]
) -> tuple[list[object | None], int, float]:
    """`window_hit(key)` and `cache.get()` of each of `cache_keys`: one Redis round trip for all
    where the cache is Redis (REDIS_URL, the counters' server too), more calls elsewhere.
    Returns (the cached values or None, hits so far, seconds to the next window)."""
    if settings.REDIS_URL and hasattr(cache, "get_many_and_count"):
        window_key, ttl, retry_after = _window(key, window_seconds)
        try:
            values, count = cache.get_many_and_count(cache_keys, window_key, ttl=ttl)
        except REDIS_ERRORS as error:
            redis_outage_log("device lookups from the database, rate limits counted per process", error)
            return [None] * len(cache_keys), _count(_local_counters, window_key, ttl), retry_after
        return values, count, retry_after
    return [cache.get(cache_key) for cache_key in cache_keys], *window_hit(key, window_seconds=window_seconds)
