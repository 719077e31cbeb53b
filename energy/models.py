"""Sites, meters, groups, gateways and the readings they send.

Units (DESIGN.md): power W, energy kWh (cumulative register), voltage V phase-neutral,
current A, frequency Hz, THD %, time UTC.
"""

from __future__ import annotations

import secrets
import uuid

from django.db import models

from joulepoint.tenancy.models import Organization, TenantModel


def new_device_secret() -> str:
    return secrets.token_hex(32)


class Site(TenantModel):
    """A facility or depot; its time zone decides local days and hours in analytics."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sites")
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    address = models.CharField(max_length=300, blank=True, default="")
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_site_name")]

    def __str__(self) -> str:
        return self.name


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


# Typed reading columns: name -> (unit, lower bound or None). The ingest validator and the
# bulk writer both read this list, so adding a column is one line here plus a migration.
READING_FIELDS: dict[str, tuple[str, float | None]] = {
    "total_power": ("W", None),
    "reactive_power": ("var", None),
    "total_energy": ("kWh", 0.0),
    "export_energy": ("kWh", 0.0),
    "voltage_a": ("V", 0.0),
    "voltage_b": ("V", 0.0),
    "voltage_c": ("V", 0.0),
    "current_a": ("A", None),
    "current_b": ("A", None),
    "current_c": ("A", None),
    "frequency": ("Hz", 0.0),
    "power_factor": ("", -1.0),
    "thd_v_pct": ("%", 0.0),
    "thd_i_pct": ("%", 0.0),
}


class Reading(TenantModel):
    """One meter sample. (meter, ts) is unique: a re-sent sample is a duplicate, first write wins.
    The unique index on (meter, ts) also serves "readings of meter M between t1 and t2"."""

    tenant_path = "meter__organization"

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="readings")
    ts = models.DateTimeField()
    total_power = models.FloatField(null=True, blank=True)
    reactive_power = models.FloatField(null=True, blank=True)
    total_energy = models.FloatField(null=True, blank=True)
    export_energy = models.FloatField(null=True, blank=True)
    voltage_a = models.FloatField(null=True, blank=True)
    voltage_b = models.FloatField(null=True, blank=True)
    voltage_c = models.FloatField(null=True, blank=True)
    current_a = models.FloatField(null=True, blank=True)
    current_b = models.FloatField(null=True, blank=True)
    current_c = models.FloatField(null=True, blank=True)
    frequency = models.FloatField(null=True, blank=True)
    power_factor = models.FloatField(null=True, blank=True)
    thd_v_pct = models.FloatField(null=True, blank=True)
    thd_i_pct = models.FloatField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["meter_id", "ts"]
        constraints = [models.UniqueConstraint(fields=["meter", "ts"], name="uniq_reading_meter_ts")]

    def __str__(self) -> str:
        return f"{self.meter_id}@{self.ts.isoformat()}"


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


# Analytics models (rollups, their work queue, retention settings) and power quality and
# protection models live in their own modules; importing them here makes them models of this
# app (Django loads energy.models).
from energy.analytics.models import (  # noqa: E402, F401
    AnalyticsSettings,
    ReadingRollup1h,
    ReadingRollup1m,
    ReadingRollup15m,
    RollupDirty,
)
from energy.pq_models import (  # noqa: E402, F401
    DEFAULT_EARTH_LEAKAGE_MA,
    DEFAULT_IMBALANCE_PCT,
    DEFAULT_NOMINAL_FREQUENCY_HZ,
    DEFAULT_SAG_PU,
    DEFAULT_SWELL_PU,
    DEFAULT_THD_PCT,
    BreakerState,
    MeterPQState,
    PQConfig,
    PQEvent,
    ProtectionEvent,
)
