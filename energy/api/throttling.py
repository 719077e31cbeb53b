"""Per-device rate limit in Django's cache (Redis in production, so every process shares it).

A fixed one-minute window with an atomic `incr`, rather than DRF's SimpleRateThrottle, whose
read-modify-write history list lets concurrent processes overshoot the limit.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from energy.models import DeviceCredential

WINDOW_SECONDS = 60


class DeviceRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        device = request.auth
        if not isinstance(device, DeviceCredential):
            return True
        limit = settings.DEVICE_RATE_LIMIT_PER_MINUTE
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"ratelimit:device:{device.device_key}:{window}"
        cache.add(key, 0, WINDOW_SECONDS * 2)
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            cache.add(key, 1, WINDOW_SECONDS * 2)
            count = 1
        self._retry_after = (window + 1) * WINDOW_SECONDS - now
        return count <= limit

    def wait(self) -> float:
        return max(1.0, self._retry_after)
