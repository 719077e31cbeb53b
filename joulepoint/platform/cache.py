"""Django's Redis cache backend, keeping one client per connection pool, with one lean round trip
for the device requests' hot path.

Django's RedisCacheClient builds a new `redis.Redis` for every cache operation; since redis-py
5 that constructor fills a case-insensitive table of hundreds of response callbacks, which cost
more per `cache.get` than the round trip itself. Device lookups and the
automations' rule check read the cache on every ingest request. A `redis.Redis` is safe to share
between threads (its pool hands each command a connection), so one per pool is enough.
"""

from __future__ import annotations

import os
import threading

import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.db.models import Model
from django.db.models.base import ModelState

# Model instances unpickled once per process, by their pickled bytes (see `_loads_kept`). Kept
# at module level: Django makes a cache backend, and so a client, per thread.
KEPT_INSTANCES_MAX = 4096
_kept_instances: dict[bytes, Model] = {}


def _resp(*args: str | int) -> bytes:
    """One command in RESP, the Redis protocol. Written here rather than with redis-py's
    `pack_commands`, which cost a tenth of a device request's whole lookup for its four commands:
    the arguments here are only keys and integers."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class PooledClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}
        self._hot = threading.local()

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client

    def _hot_connection(self) -> redis.Connection:
        """This thread's own connection to the write server, made like the pool's.

        A device request's round trip through redis-py's Pipeline spends most of its CPU taking a
        connection from the pool and giving it back and in the pipeline's bookkeeping; on a
        connection kept per thread, with the commands sent packed and the replies read one by
        one, it costs about a quarter of that (docs/perf-history.md). Kept per process too: a connection
        made before a fork is never used by the child."""
        hot = self._hot
        if getattr(hot, "pid", None) != os.getpid():
            pool = self._get_connection_pool(write=True)
            hot.connection = pool.connection_class(**pool.connection_kwargs)
            hot.pid = os.getpid()
        return hot.connection

    def _round_trip(self, commands: list[tuple[str | int, ...]]) -> list[object]:
        """The replies to `commands`, sent together; a reply that is an error is raised once all
        are read, so the connection stays in step. A lost connection is made again and the
        commands sent once more, as redis-py's own retry would."""
        packed = [b"".join(_resp(*command) for command in commands)]
        connection = self._hot_connection()
        for attempt in (1, 2):
            try:
                connection.send_packed_command(packed)
                replies: list[object] = []
                for _ in commands:
                    try:
                        replies.append(connection.read_response())
                    except redis.ResponseError as error:
                        replies.append(error)
                break
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                connection.disconnect()
                if attempt == 2:
                    raise
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    def get_many_and_count(self, keys: list[str], counter: str, ttl: int) -> tuple[list[object | None], int]:
        # GETs, INCR and EXPIRE in one round trip where Django's API needs two calls (and three
        # for its incr). All keys live on the write server: the counter must.
        *values, count, _ = self._round_trip(
            [*(("GET", key) for key in keys), ("INCR", counter), ("EXPIRE", counter, ttl)]
        )
        return [None if value is None else self._loads_kept(value) for value in values], count

    def _loads_kept(self, raw: bytes) -> object:
        """The value pickled in `raw`; a model instance is unpickled once per process while its
        bytes stay the same, and each caller gets its own copy of it.

        The device a request authenticates as is read this way on every device request, and
        pickle.loads of a model instance is a measurable share of a single reading's CPU; the
        copy costs a small fraction of it. Equal bytes are an equal row, so a device
        changed and cached again (its entry is deleted on every save) is unpickled afresh.
        Only model instances are kept: another mutable value would be shared by callers."""
        kept = _kept_instances.get(raw)
        if kept is None:
            value = self._serializer.loads(raw)
            if not isinstance(value, Model):
                return value
            if len(_kept_instances) >= KEPT_INSTANCES_MAX:
                _kept_instances.clear()
            kept = _kept_instances[raw] = value
        return _instance_copy(kept)


def _instance_copy(instance: Model) -> Model:
    """A copy of a model instance with its own field values and state, as a fresh load of its
    row would give (no related objects cached): what one request sets on it, no other sees."""
    copy = instance.__class__.__new__(instance.__class__)
    copy.__dict__ = instance.__dict__.copy()
    copy._state = ModelState()
    copy._state.db, copy._state.adding = instance._state.db, instance._state.adding
    return copy


class PooledClientRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = PooledClientRedisCacheClient

    def get_many_and_count(
        self, keys: list[str], counter: str, *, ttl: int, version=None
    ) -> tuple[list[object | None], int]:
        """`cache.get(key)` of each key and one hit on the raw Redis counter `counter` (expiring
        after `ttl` seconds), in one round trip; returns (the values or None, the counter's value)."""
        made = [self.make_and_validate_key(key, version=version) for key in keys]
        return self._cache.get_many_and_count(made, counter, ttl)


def cache_window_claim(key: str, seconds: float, *, cache=None) -> bool:
    """Claim the window of `seconds` named `key`: True for the first caller, False for every other
    until it ends, across processes when the cache is Redis (production), within the process on
    the embedded default's local-memory cache.

    Django's `cache.add` would do on both, but its Redis client rounds a timeout down to whole
    seconds (0.25 s would be 0: no window at all), so on Redis the claim is one SET NX with a
    millisecond expiry."""
    # The backend itself: `django.core.cache.cache` is a proxy that is no RedisCache instance, so
    # testing it would send the claim down the `cache.add` path and its zero-second window.
    cache = caches["default"] if cache is None else cache
    if isinstance(cache, RedisCache):
        client = cache._cache.get_client(key, write=True)
        expiry_ms = max(1, round(seconds * 1000))
        return bool(client.set(cache.make_and_validate_key(key), b"1", px=expiry_ms, nx=True))
    return cache.add(key, 1, timeout=seconds)
