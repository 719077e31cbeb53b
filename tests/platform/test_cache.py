"""joulepoint.platform.cache: the device requests' single Redis round trip (GETs and a counted hit), and
the window claim shared by every process (Redis) or within one (the embedded default)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

from joulepoint.platform import cache as cache_module
from tests import factories

# The round trip is the Redis cache's; the window claim has a local-memory form too.
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis cache's")

COUNTER = "test:cache:counter"


@pytest.fixture
def server():
    """A separate client on the cache's server, to look at and disturb it from outside."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(COUNTER)
    yield client
    client.delete(COUNTER)
    client.close()


@needs_redis
def test_values_and_the_counted_hit_come_back_together(server):
    cache.set("test:cache:meter", {"serial": "M-1"}, 30)
    cache.set("test:cache:epoch", 7, 30)

    values, count = cache.get_many_and_count(
        ["test:cache:meter", "test:cache:missing", "test:cache:epoch"], COUNTER, ttl=90
    )
    _, again = cache.get_many_and_count(["test:cache:meter"], COUNTER, ttl=90)

    assert values == [{"serial": "M-1"}, None, 7]
    assert (count, again) == (1, 2)
    assert 0 < server.ttl(COUNTER) <= 90


@needs_redis
def test_an_error_reply_is_raised_and_the_next_round_trip_reads_its_own_replies(server):
    cache.set("test:cache:meter", "first", 30)
    server.set(COUNTER, "not a number")

    with pytest.raises(redis.ResponseError):
        cache.get_many_and_count(["test:cache:meter"], COUNTER, ttl=90)

    server.delete(COUNTER)
    cache.set("test:cache:meter", "second", 30)
    assert cache.get_many_and_count(["test:cache:meter"], COUNTER, ttl=90) == (["second"], 1)


@needs_redis
def test_a_connection_the_server_closed_is_made_again(server):
    cache.get_many_and_count(["test:cache:meter"], COUNTER, ttl=90)
    connection = cache._cache._hot_connection()
    connection.send_command("CLIENT", "ID")
    server.client_kill_filter(_id=connection.read_response())

    cache.set("test:cache:meter", "after", 30)
    assert cache.get_many_and_count(["test:cache:meter"], COUNTER, ttl=90) == (["after"], 2)


@needs_redis
def test_a_forked_process_makes_its_own_connection(monkeypatch):
    parents = cache._cache._hot_connection()
    monkeypatch.setattr(cache_module.os, "getpid", lambda: -1)

    childs = cache._cache._hot_connection()

    assert childs is not parents
    assert cache._cache._hot_connection() is childs


@needs_redis
def test_commands_are_written_in_the_redis_protocol():
    assert (
        cache_module._resp("EXPIRE", "ratelimit:é", 120)
        == b"*3\r\n$6\r\nEXPIRE\r\n$12\r\nratelimit:\xc3\xa9\r\n$3\r\n120\r\n"
    )


@pytest.mark.django_db
@needs_redis
def test_a_model_instance_is_unpickled_once_and_each_reader_gets_its_own_copy(monkeypatch):
    meter = factories.MeterFactory()
    cache.set("test:cache:device", meter, 30)
    client = cache._cache
    cache_module._kept_instances.clear()
    loads = []
    original = client._serializer.loads
    monkeypatch.setattr(client._serializer, "loads", lambda raw: loads.append(raw) or original(raw))

    (first,), _ = cache.get_many_and_count(["test:cache:device"], COUNTER, ttl=90)
    first.name = "changed by the first request"
    assert first.site.pk == meter.site_id  # caches the related site on the first copy
    (second,), _ = cache.get_many_and_count(["test:cache:device"], COUNTER, ttl=90)

    assert len(loads) == 1
    assert second is not first
    assert (second.pk, second.device_key, second.device_secret) == (meter.pk, meter.device_key, meter.device_secret)
    assert second.name == meter.name
    assert not second._state.adding and second._state.db == "default"
    assert second._state.fields_cache == {}


@pytest.mark.django_db
@needs_redis
def test_a_row_cached_again_after_a_change_is_read_afresh():
    meter = factories.MeterFactory(require_signature=False)
    cache.set("test:cache:device", meter, 30)
    cache.get_many_and_count(["test:cache:device"], COUNTER, ttl=90)

    meter.require_signature = True
    cache.set("test:cache:device", meter, 30)
    (read,), _ = cache.get_many_and_count(["test:cache:device"], COUNTER, ttl=90)

    assert read.require_signature is True


@needs_redis
def test_other_values_are_never_shared_between_readers():
    cache.set("test:cache:document", {"readings": [1, 2]}, 30)
    (first,), _ = cache.get_many_and_count(["test:cache:document"], COUNTER, ttl=90)
    first["readings"].append(3)
    (second,), _ = cache.get_many_and_count(["test:cache:document"], COUNTER, ttl=90)

    assert second == {"readings": [1, 2]}


@pytest.mark.django_db
@needs_redis
def test_the_kept_instances_are_bounded(monkeypatch):
    monkeypatch.setattr(cache_module, "KEPT_INSTANCES_MAX", 2)
    cache_module._kept_instances.clear()
    for name in ("a", "b", "c"):
        cache.set("test:cache:device", factories.MeterFactory(name=name), 30)
        cache.get_many_and_count(["test:cache:device"], COUNTER, ttl=90)

    assert len(cache_module._kept_instances) <= 2


def _claims_over_time(first, second) -> list[bool]:
    key = f"test:window:{uuid.uuid4().hex}"
    claims = [
        cache_module.cache_window_claim(key, 0.3, cache=first),
        cache_module.cache_window_claim(key, 0.3, cache=second),
        cache_module.cache_window_claim(key, 0.3, cache=first),
    ]
    time.sleep(0.45)
    claims += [
        cache_module.cache_window_claim(key, 0.3, cache=second),
        cache_module.cache_window_claim(key, 0.3, cache=first),
    ]
    return claims


@needs_redis
def test_a_window_is_claimed_once_across_two_cache_clients():
    # Two clients with their own connection pools, as two server processes hold them; a
    # sub-second window (Django's cache.add would round it down to no window at all).
    first = cache_module.PooledClientRedisCache(settings.REDIS_URL, {})
    second = cache_module.PooledClientRedisCache(settings.REDIS_URL, {})
    assert first._cache.get_client(write=True) is not second._cache.get_client(write=True)
    assert _claims_over_time(first, second) == [True, False, False, True, False]


def test_the_configured_cache_holds_the_window_when_none_is_given():
    # What the live topology claims through (energy.topology.services.topology_push_claim):
    # the default cache, in Redis when REDIS_URL is set.
    assert _claims_over_time(None, None) == [True, False, False, True, False]


def test_the_embedded_defaults_window_is_claimed_once_in_the_process():
    shared = LocMemCache("test-window", {})
    assert _claims_over_time(shared, shared) == [True, False, False, True, False]
