"""Devices that push telemetry (meters and gateways) with their credentials, and meter groups.

Units (docs/design.md): power W, energy kWh (cumulative register), voltage V phase-neutral,
current A, frequency Hz, THD %, time UTC.
"""

from __future__ import annotations

import secrets
import uuid

from django.db import models

from energy.models.sites import Site
from joulepoint.tenancy.models import Organization, TenantModel


def new_device_secret() -> str:
    return secrets.token_hex(32)


class DeviceCredential(TenantModel):
    """What a device authenticates with: `X-Device-Key` and, when signing, `X-Signature`.

    The secret is kept in clear because the server must compute the same HMAC as the device;
    a hash could not verify a signature. It is shown to the user only on creation and rotation.
    """

    device_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    device_secret = models.CharField(max_length=64, default=new_device_secret, editable=False)
    require_signature = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    key_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True

    @property
    def mqtt_username(self) -> str:
        """The device's MQTT login and topic segment, `meter-<id>` / `gateway-<id>`: not a secret
        (its password is the device key; docs/live.md, "MQTT identity")."""
        return f"{self._meta.model_name}-{self.pk}"


class Meter(DeviceCredential):
    """A metering point at a site (grid connection, load, PV, battery, EV charger)."""

    class Kind(models.TextChoices):
        GRID = "grid", "Grid connection"
        LOAD = "load", "Load"
        PV = "pv", "PV inverter"
        BATTERY = "battery", "Battery"
        EV_CHARGER = "ev_charger", "EV charger"
        OTHER = "other", "Other"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="meters")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="meters")
    name = models.CharField(max_length=200)
    serial = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.LOAD)
    nominal_voltage = models.FloatField(default=230.0, help_text="Phase-neutral volts")
    phases = models.PositiveSmallIntegerField(default=3, choices=[(1, "Single phase"), (3, "Three phase")])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["organization", "serial"], name="uniq_meter_serial")]

    def __str__(self) -> str:
        return f"{self.name} ({self.serial})"


class Gateway(DeviceCredential):
    """A site gateway that may post readings for any meter of its site, naming each one."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="gateways")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="gateways")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class MeterGroup(TenantModel):
    """A named set of meters (a feeder, a building, all EV chargers) used as an analytics subject."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="meter_groups")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    meters = models.ManyToManyField(Meter, related_name="groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_group_name")]

    def __str__(self) -> str:
        return self.name
