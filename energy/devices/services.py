"""Device credentials: looking a device up by its key (through the shared cache), rotating a key."""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from energy.models import DeviceCredential, Gateway, Meter, new_device_secret
from joulepoint.events import listeners
from joulepoint.platform.degraded import REDIS_ERRORS, SharedCacheUnavailable, redis_outage_log
from joulepoint.platform.enqueue import enqueue_on_commit
from joulepoint.platform.ratelimit import window_hit_and_cache_get

logger = logging.getLogger(__name__)


# Device lookups are cached only where the cache is shared by every process (Redis): a key
# rotated or a meter disabled in one process must stop working in all of them at once, which
# only a shared entry deleted on change can promise. The TTL bounds what a write that bypasses
# model signals (a queryset update) could leave behind.
DEVICE_CACHE_SECONDS = 300
# A key that names no active device is remembered too, so a stream of requests with made-up keys
# costs one Redis round trip each rather than two database queries. Saving a device deletes its
# key's entry (energy.apps), so a device created or re-enabled is never hidden by it.
UNKNOWN_DEVICE = "unknown"
UNKNOWN_DEVICE_CACHE_SECONDS = 60


def _device_cache_key(device_key: uuid.UUID | str) -> str:
    return f"jp:device:{device_key}"


def device_cache_forget(*, device_key: uuid.UUID | str, required: bool = False) -> None:
    """Drop the cached lookup of a key (its device changed, was rotated away or deleted).

    Again after commit: a request in another process may have cached the row as it was before
    this transaction committed. With Redis unreachable, `required` raises SharedCacheUnavailable
    (the write rolls back and the API answers 503): a rotation promises the old key stops working
    at once, which a cached entry surviving the outage would break. Otherwise the outage is
    logged and the entry expires within DEVICE_CACHE_SECONDS (a Redis restarted without its
    data has none)."""
    if not settings.REDIS_URL:
        return
    key = _device_cache_key(device_key)
    try:
        cache.delete(key)
    except REDIS_ERRORS as error:
        if required:
            raise SharedCacheUnavailable("The shared cache is unavailable; retry shortly.") from error
        redis_outage_log("a changed device's cached entry left to expire", error)
    transaction.on_commit(lambda: _cache_delete_after_commit(key))


def _cache_delete_after_commit(key: str) -> None:
    try:
        cache.delete(key)
    except REDIS_ERRORS as error:
        redis_outage_log("a changed device's cached entry left to expire", error)


def device_changed(sender, instance, **kwargs) -> None:
    """post_save/post_delete receiver of Meter and Gateway (connected in energy.apps): a changed
    or deleted device must not stay authenticated from the shared cache."""
    device_cache_forget(device_key=instance.device_key)


MQTT_AUTH_SYNC_TASK = "energy.tasks.mqtt_broker_auth_sync"
MQTT_LOGIN_FIELDS = frozenset({"device_key", "is_active"})


def device_mqtt_login_changed(sender, instance, **kwargs) -> None:
    """post_save/post_delete receiver of Meter and Gateway (connected in energy.apps): when the
    platform manages the broker's logins (MQTT_AUTH_DIR), a device created, rotated, disabled or
    deleted rewrites them once the change commits."""
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not MQTT_LOGIN_FIELDS & set(update_fields):
        return  # a save that touched neither the key nor whether the device may log in
    if settings.MQTT_AUTH_DIR:
        enqueue_on_commit(MQTT_AUTH_SYNC_TASK)


@transaction.atomic
def device_credential_rotate(*, device: DeviceCredential) -> DeviceCredential:
    """Give a meter or gateway a new key and secret; the old key stops working at once. With the
    shared cache unreachable nothing changes and SharedCacheUnavailable is raised (API: 503)."""
    old_key = device.device_key
    device.device_key = uuid.uuid4()
    device.device_secret = new_device_secret()
    device.key_rotated_at = timezone.now()
    device.save(update_fields=["device_key", "device_secret", "key_rotated_at"])
    device_cache_forget(device_key=old_key, required=True)
    return device


def device_for_key(*, device_key: uuid.UUID) -> Meter | Gateway | None:
    """The active meter or gateway holding this key (every device request starts here)."""
    cached = None
    if settings.REDIS_URL:
        try:
            cached = cache.get(_device_cache_key(device_key))
        except REDIS_ERRORS as error:
            redis_outage_log("device lookups from the database", error)
    return _device_from_cache(device_key, cached)


def device_for_key_with_hit(
    *, device_key: uuid.UUID, rate_key: str, window_seconds: int
) -> tuple[Meter | Gateway | None, tuple[int, float] | None]:
    """`device_for_key`, and one hit on the rate-limit window `rate_key` counted in the same
    Redis round trip as the cached lookup: (device or None, (hits so far, seconds to the next
    window)). The hit is None where the cache is not Redis: the caller counts it itself.

    The same round trip reads the listeners' epoch (joulepoint.events.listeners), so the
    fan-out after this request's ingest asks Redis nothing.

    The hit is counted before the key is known to be valid, so an unknown key counts too (its
    counter expires with the window)."""
    if not settings.REDIS_URL:
        return device_for_key(device_key=device_key), None
    (cached, epoch), count, retry_after = window_hit_and_cache_get(
        rate_key, window_seconds=window_seconds, cache_keys=[_device_cache_key(device_key), listeners.EPOCH_KEY]
    )
    listeners.listeners_epoch_seen(epoch)
    return _device_from_cache(device_key, cached), (count, retry_after)


def _device_from_cache(device_key: uuid.UUID, cached: object) -> Meter | Gateway | None:
    """The device a cache entry names (None for a key remembered as unknown); loaded on a miss."""
    if cached is None:
        return _device_load(device_key)
    return None if cached == UNKNOWN_DEVICE else cached


def _device_load(device_key: uuid.UUID) -> Meter | Gateway | None:
    """The device from the database, cached for the next request where the cache is shared."""
    device = Meter.objects.filter(device_key=device_key, is_active=True).first()
    if device is None:
        device = Gateway.objects.filter(device_key=device_key, is_active=True).first()
    if settings.REDIS_URL:
        try:
            if device is None:
                cache.set(_device_cache_key(device_key), UNKNOWN_DEVICE, UNKNOWN_DEVICE_CACHE_SECONDS)
            else:
                cache.set(_device_cache_key(device_key), device, DEVICE_CACHE_SECONDS)
        except REDIS_ERRORS as error:
            redis_outage_log("device lookups from the database", error)
    return device
