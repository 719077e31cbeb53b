"""Device credentials while the shared cache (Redis) is unreachable."""

from __future__ import annotations

import pytest

from energy.devices.services import device_for_key

pytestmark = pytest.mark.django_db


def test_rotation_answers_503_and_changes_nothing_while_redis_is_down(api, meter, dead_redis):
    old_key, old_secret = meter.device_key, meter.device_secret
    response = api.post(f"/api/energy/meters/{meter.pk}/rotate_key/")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "shared_cache_unavailable"
    meter.refresh_from_db()
    assert (meter.device_key, meter.device_secret) == (old_key, old_secret)


def test_device_lookup_falls_back_to_the_database(meter, dead_redis, caplog):
    assert device_for_key(device_key=meter.device_key).pk == meter.pk
    assert "Redis unavailable" in caplog.text
