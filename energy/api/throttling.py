"""Per-device rate limit shared by every process (see joulepoint.ratelimit).

A fixed one-minute window with an atomic increment, rather than DRF's SimpleRateThrottle, whose
read-modify-write history list lets concurrent processes overshoot the limit.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from energy.models import DeviceCredential
from joulepoint.ratelimit import window_hit

WINDOW_SECONDS = 60


class DeviceRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        device = request.auth
        if not isinstance(device, DeviceCredential):
            return True
        count, self._retry_after = window_hit(f"device:{device.device_key}", window_seconds=WINDOW_SECONDS)
        return count <= settings.DEVICE_RATE_LIMIT_PER_MINUTE

    def wait(self) -> float:
        return max(1.0, self._retry_after)
