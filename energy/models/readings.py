"""Readings: one row per meter sample, and the typed columns a reading may carry."""

from __future__ import annotations

from django.db import models

from energy.models.devices import Meter
from joulepoint.tenancy.models import TenantModel

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
