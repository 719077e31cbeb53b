"""Per-device rate limit shared by every process (see joulepoint.platform.ratelimit).

A fixed one-minute window with an atomic increment, rather than DRF's SimpleRateThrottle, whose
read-modify-write history list lets concurrent processes overshoot the limit.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from energy.models import DeviceCredential
from joulepoint.platform.ratelimit import window_hit

WINDOW_SECONDS = 60


def device_rate_key(device_key) -> str:
    return f"device:{device_key}"


class DeviceRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        device = request.auth
        if not isinstance(device, DeviceCredential):
            return True
        # DeviceKeyAuthentication counts the hit with its device lookup where it can (one Redis
        # round trip for both); it is this device's when the key is the same.
        counted_key, hit = getattr(request, "device_rate_hit", (None, None))
        if hit is None or counted_key != device.device_key:
            hit = window_hit(device_rate_key(device.device_key), window_seconds=WINDOW_SECONDS)
        count, self._retry_after = hit
        return count <= settings.DEVICE_RATE_LIMIT_PER_MINUTE

    def wait(self) -> float:
        return max(1.0, self._retry_after)
