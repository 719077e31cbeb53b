"""Power quality and protection rows: per-meter thresholds, detected PQ events, protection
events and each meter's detection state. Rules live in energy.power_quality.rules, writes in
energy.power_quality (config, detection, protection); docs/power-quality.md explains the event model.

Imported at the end of energy/models.py, so these are models of the `energy` app.
"""

from __future__ import annotations

from django.db import models

from joulepoint.tenancy.models import Organization, TenantModel

# The seed's defaults: sag 0.9 pu, swell 1.1 pu (IEEE 1159's sag/swell band edges), 5 % voltage
# THD (IEEE 519's limit for general systems at or below 1 kV is 8 %; 5 % is the stricter
# figure most facility managers start with), 2 % voltage imbalance (IEEE 1159's typical
# steady-state range is 0.5-2 %).
DEFAULT_SAG_PU = 0.9
DEFAULT_SWELL_PU = 1.1
DEFAULT_THD_PCT = 5.0
DEFAULT_IMBALANCE_PCT = 2.0
# 30 mA is the rated residual operating current of a personnel-protection RCD (IEC 61008).
DEFAULT_EARTH_LEAKAGE_MA = 30.0
DEFAULT_NOMINAL_FREQUENCY_HZ = 50.0


class PQConfig(TenantModel):
    """A meter's power quality thresholds; at most one per meter. A meter without a row uses
    the defaults above. Voltage thresholds are per-unit of the meter's nominal voltage.

    Invariant (checked by the service and the serializer): 0.1 < sag < 1 < swell ≤ 2,
    0 < THD ≤ 100, 0 < imbalance ≤ 100, earth leakage > 0. Tenant: the meter's organization
    (the `organization` column repeats it so `for_org` needs no join).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="pq_configs")
    meter = models.OneToOneField("energy.Meter", on_delete=models.CASCADE, related_name="pq_config")
    sag_v_threshold = models.FloatField(default=DEFAULT_SAG_PU, help_text="Per-unit of nominal voltage")
    swell_v_threshold = models.FloatField(default=DEFAULT_SWELL_PU, help_text="Per-unit of nominal voltage")
    thd_pct_threshold = models.FloatField(default=DEFAULT_THD_PCT, help_text="Voltage THD, %")
    imbalance_pct_threshold = models.FloatField(default=DEFAULT_IMBALANCE_PCT, help_text="Voltage unbalance, %")
    earth_leakage_ma_threshold = models.FloatField(default=DEFAULT_EARTH_LEAKAGE_MA, help_text="mA")
    nominal_frequency_hz = models.FloatField(
        default=DEFAULT_NOMINAL_FREQUENCY_HZ,
        choices=[(50.0, "50 Hz"), (60.0, "60 Hz")],
        help_text="Converts durations to cycles for the IEEE 1159 duration class",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "PQ configuration"

    def __str__(self) -> str:
        return f"PQ config of meter {self.meter_id}"


class PQEvent(TenantModel):
    """A power quality event: a maximal run of a meter's readings (in timestamp order) that
    violate one rule. It opens at the first violating reading (`start`) and closes at the first
    normal reading after it (`end`); readings that do not carry the rule's measurement neither
    extend nor close it. (meter, kind, start) is unique. Written only by energy.power_quality.detection.

    Tenant: `organization` (the meter's).
    """

    class Kind(models.TextChoices):
        SAG = "sag", "Voltage sag"
        SWELL = "swell", "Voltage swell"
        INTERRUPTION = "interruption", "Interruption"
        THD = "thd", "Voltage THD"
        IMBALANCE = "imbalance", "Voltage imbalance"

    class DurationClass(models.TextChoices):
        INSTANTANEOUS = "instantaneous", "Instantaneous (0.5-30 cycles)"
        MOMENTARY = "momentary", "Momentary (30 cycles-3 s)"
        TEMPORARY = "temporary", "Temporary (3 s-1 min)"
        LONG_DURATION = "long_duration", "Long duration (> 1 min)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="pq_events")
    meter = models.ForeignKey("energy.Meter", on_delete=models.CASCADE, related_name="pq_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    start = models.DateTimeField(help_text="Timestamp of the first violating reading")
    end = models.DateTimeField(null=True, blank=True, help_text="Timestamp of the first normal reading; null = open")
    last_violation_at = models.DateTimeField(help_text="Timestamp of the last violating reading so far")
    duration_s = models.FloatField(null=True, blank=True, help_text="end - start, seconds; null while open")
    duration_class = models.CharField(max_length=16, choices=DurationClass.choices, blank=True, default="")
    ieee_category = models.CharField(max_length=32, blank=True, default="")
    phases = models.JSONField(default=list, blank=True)
    worst_value = models.FloatField(help_text="Lowest pu (sag, interruption), highest pu (swell) or highest %")
    unit = models.CharField(max_length=4)
    threshold = models.FloatField(help_text="The threshold in force when the event was evaluated (pu or %)")
    method = models.CharField(max_length=16, blank=True, default="", help_text="Imbalance: ieee_pvur or nema_lvur")
    reading_count = models.PositiveIntegerField(default=0, help_text="Violating readings in the event")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-start", "id"]
        verbose_name = "PQ event"
        constraints = [models.UniqueConstraint(fields=["meter", "kind", "start"], name="uniq_pq_event_start")]
        indexes = [
            models.Index(fields=["organization", "start"], name="pq_event_org_start_idx"),
            models.Index(fields=["meter", "end"], name="pq_event_meter_end_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on meter {self.meter_id} at {self.start.isoformat()}"

    @property
    def is_open(self) -> bool:
        return self.end is None


class ProtectionEvent(TenantModel):
    """A protection event of a meter: a trip, an earth leakage over the limit, or the breaker
    opening or closing. Posted by the device (`origin=device`) or derived from readings that
    carry `breaker_state` / `earth_leakage_ma` (`origin=reading`). (meter, kind, occurred_at,
    origin) is unique, so a re-sent event is a duplicate. Tenant: `organization`.
    """

    class Kind(models.TextChoices):
        TRIP = "trip", "Trip"
        EARTH_LEAKAGE = "earth_leakage", "Earth leakage"
        BREAKER_OPEN = "breaker_open", "Breaker opened"
        BREAKER_CLOSED = "breaker_closed", "Breaker closed"

    class Origin(models.TextChoices):
        DEVICE = "device", "Posted by the device"
        READING = "reading", "Derived from readings"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="protection_events")
    meter = models.ForeignKey("energy.Meter", on_delete=models.CASCADE, related_name="protection_events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    occurred_at = models.DateTimeField()
    earth_leakage_ma = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.DEVICE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["meter", "kind", "occurred_at", "origin"], name="uniq_protection_event")
        ]
        indexes = [models.Index(fields=["organization", "occurred_at"], name="prot_event_org_ts_idx")]

    def __str__(self) -> str:
        return f"{self.kind} on meter {self.meter_id} at {self.occurred_at.isoformat()}"


class BreakerState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class MeterPQState(TenantModel):
    """Where detection stands for one meter (one row per meter, created on its first reading).

    A batch is "in order" when no stored reading of the meter other than its own lies at or
    after its earliest reading; then it extends the open events incrementally, otherwise
    detection re-evaluates the affected window from stored readings. `reading_breaker` /
    `leakage_over` are the states of the latest reading carrying those fields (what the next
    reading's transition is measured against; unknown / null when no reading carried them
    yet). `breaker_state` is the meter's current breaker position from the latest-timestamped
    observation, reading or posted event. Written only under the meter's row lock, and only
    when something in it changes (a quiet batch writes nothing). Tenant: `organization`.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="meter_pq_states")
    meter = models.OneToOneField("energy.Meter", on_delete=models.CASCADE, related_name="pq_state")
    # How many of the meter's PQ events are open: when none, a batch in order needs no query
    # for them (one round trip fewer on the ingest path).
    open_event_count = models.PositiveSmallIntegerField(default=0)
    reading_breaker = models.CharField(max_length=8, choices=BreakerState.choices, default=BreakerState.UNKNOWN)
    leakage_over = models.BooleanField(null=True, blank=True, help_text="Null: no reading carried earth leakage yet")
    breaker_state = models.CharField(max_length=8, choices=BreakerState.choices, default=BreakerState.UNKNOWN)
    breaker_state_at = models.DateTimeField(null=True, blank=True)
    breaker_state_origin = models.CharField(max_length=8, choices=ProtectionEvent.Origin.choices, blank=True)

    class Meta:
        verbose_name = "meter protection state"

    def __str__(self) -> str:
        return f"meter {self.meter_id}: breaker {self.breaker_state}"
