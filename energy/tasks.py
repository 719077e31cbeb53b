"""Celery doors of the energy app: take ids, call one service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from energy import services


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=2, retry_backoff_max=60, max_retries=8)
def device_command_deliver(command_id: int) -> str | None:
    """Retried while the MQTT broker is unreachable; the command stays pending (and pollable)."""
    command = services.device_command_deliver(command_id=command_id)
    return command.status if command else None


@shared_task
def device_commands_expire() -> int:
    return services.device_commands_expire()
