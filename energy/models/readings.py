"""Readings: one row per meter sample, and the typed columns a reading may carry."""

from __future__ import annotations

from django.db import models

from energy.models.devices import Meter
from joulepoint.tenancy.models import TenantModel

# Typed reading columns: name -> (unit, lowest, highest plausible value). The ingest validator,
# the bulk writer and the OpenAPI schema read this list, so adding a column is one line here plus
# a migration. The bounds are physical, not a meter's rating: they refuse what no installation
# can measure (a finite 1e308 W included), so no stored value can overflow an aggregate
# (docs/design.md, Units). GW-scale power, MV-scale voltage and a TWh-scale register pass.
READING_FIELDS: dict[str, tuple[str, float, float]] = {
    "total_power": ("W", -1e10, 1e10),  # ±10 GW
    "reactive_power": ("var", -1e10, 1e10),
    "total_energy": ("kWh", 0.0, 1e12),
    "export_energy": ("kWh", 0.0, 1e12),
    "voltage_a": ("V", 0.0, 1e6),  # up to 1,000 kV
    "voltage_b": ("V", 0.0, 1e6),
    "voltage_c": ("V", 0.0, 1e6),
    "current_a": ("A", -1e6, 1e6),
    "current_b": ("A", -1e6, 1e6),
    "current_c": ("A", -1e6, 1e6),
    "frequency": ("Hz", 0.0, 1000.0),
    "power_factor": ("", -1.0, 1.0),
    "thd_v_pct": ("%", 0.0, 1000.0),
    "thd_i_pct": ("%", 0.0, 1000.0),
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
