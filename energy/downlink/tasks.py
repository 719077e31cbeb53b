"""Celery doors of the downlink: take ids, call one service, safe to run twice.

Named as they were when they lived in energy/tasks.py: queued messages and beat schedules
refer to tasks by name."""

from __future__ import annotations

from celery import shared_task

from energy.downlink import services as downlink


@shared_task(
    name=downlink.DELIVER_TASK,
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def device_command_deliver(command_id: int) -> str | None:
    """Retried while the MQTT broker is unreachable; the command stays pending (and pollable)."""
    command = downlink.device_command_deliver(command_id=command_id)
    return command.status if command else None


@shared_task(name="energy.tasks.device_commands_expire")
def device_commands_expire() -> int:
    return downlink.device_commands_expire()
