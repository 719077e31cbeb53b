"""Downlink commands to devices."""

from __future__ import annotations

from django.db import models

from energy.models.devices import Gateway, Meter
from joulepoint.tenancy.models import Organization, TenantModel


class DeviceCommand(TenantModel):
    """A downlink command for one meter or gateway (relay switch, charging setpoint, …).

    Status moves pending → delivered → acked or failed, and pending/delivered → expired once
    `expires_at` passes; acked, failed and expired are final. Exactly one of `meter`/`gateway`
    is set, of the command's organization. Written only by energy.services.device_command_*.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        ACKED = "acked"
        FAILED = "failed"
        EXPIRED = "expired"

    class Channel(models.TextChoices):
        MQTT = "mqtt"
        WS = "ws"
        HTTP = "http"
        OCPP = "ocpp"

    FINAL = frozenset({Status.ACKED, Status.FAILED, Status.EXPIRED})

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="device_commands")
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, null=True, blank=True, related_name="commands")
    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, null=True, blank=True, related_name="commands")
    name = models.CharField(max_length=100, help_text="What to do, e.g. relay.open or charging.setpoint")
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    channel = models.CharField(max_length=8, choices=Channel.choices, blank=True, default="")
    result = models.JSONField(default=dict, blank=True, help_text="What the device answered with its ack")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"], name="devcmd_status_expiry_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(meter__isnull=False, gateway__isnull=True)
                | models.Q(meter__isnull=True, gateway__isnull=False),
                name="devcmd_one_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.meter or self.gateway} ({self.status})"

    @property
    def device(self) -> Meter | Gateway:
        return self.meter or self.gateway
