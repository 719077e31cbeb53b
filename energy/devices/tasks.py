"""Celery doors of device credentials: safe to run twice (each run writes the whole state)."""

from __future__ import annotations

from celery import shared_task

from energy.devices import mqtt_auth, services


@shared_task(
    name=services.MQTT_AUTH_SYNC_TASK, acks_late=True, autoretry_for=(OSError,), retry_backoff=2, max_retries=5
)
def mqtt_broker_auth_sync() -> int | None:
    files = mqtt_auth.mqtt_broker_auth_sync()
    return files.devices if files else None
