"""Load management rows: what a site may draw (constraint, schedules, demand response events),
the chargers that can be steered (with their EVSEs, accepted ID tokens and charging sessions) and
what the allocator decided (allocations and their setpoints).

Power limits are kW (what a facility manager reads off a connection agreement); measured power
and setpoints are W and A (docs/design.md units). Writes go through energy.load.services.

Imported by energy/models/__init__.py, so these are models of the `energy` app.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from energy.models.commands import DeviceCommand
from energy.models.devices import Meter
from energy.models.sites import Site
from joulepoint.tenancy.models import Organization, TenantModel

# When the grid meter has said nothing for this long, the allocator stops trusting its figure and
# uses the constraint's fallback limit (docs/load.md).
DEFAULT_GRID_STALE_AFTER_SECONDS = 60


class SiteConstraint(TenantModel):
    """What a site's grid connection allows. A site without a row is not load-managed.
    Tenant: `organization` (the site's)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="site_constraints")
    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="constraint")
    max_import_kw = models.FloatField(help_text="Most the site may import from the grid, kW")
    max_export_kw = models.FloatField(null=True, blank=True, help_text="Most the site may export, kW (empty: no limit)")
    phase_current_limit_a = models.FloatField(
        null=True, blank=True, help_text="Per-phase current limit at the grid connection, A (empty: none)"
    )
    safety_margin_kw = models.FloatField(default=0.0, help_text="Kept free below the limit, kW")
    grid_meter = models.ForeignKey(
        Meter,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The meter at the grid connection (import positive)",
    )
    grid_stale_after_seconds = models.PositiveIntegerField(
        default=DEFAULT_GRID_STALE_AFTER_SECONDS, help_text="A grid reading older than this is not trusted"
    )
    fallback_limit_kw = models.FloatField(
        default=0.0, help_text="What the chargers may draw together while the grid reading is stale, kW"
    )
    peak_threshold_kw = models.FloatField(
        null=True, blank=True, help_text="A 15-minute average import above this is a peak (empty: no peak watch)"
    )
    # Whether the site's 15-minute average import is above peak_threshold_kw, as last announced:
    # kept here so `peak.detected` goes out once per crossing whichever process sees it (peaks.py).
    peak_active = models.BooleanField(default=False, editable=False)
    peak_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(max_import_kw__gte=0), name="load_constraint_import_gte_0"),
            models.CheckConstraint(
                condition=Q(max_export_kw__isnull=True) | Q(max_export_kw__gte=0), name="load_constraint_export_gte_0"
            ),
            models.CheckConstraint(condition=Q(safety_margin_kw__gte=0), name="load_constraint_margin_gte_0"),
            models.CheckConstraint(condition=Q(fallback_limit_kw__gte=0), name="load_constraint_fallback_gte_0"),
        ]

    def __str__(self) -> str:
        return f"Constraint of site {self.site_id}: {self.max_import_kw} kW import"


class LoadSchedule(TenantModel):
    """A recurring local-time window (the site's zone) that overrides the constraint's limits.
    `end_time` before `start_time` means the window runs across midnight into the next day.
    Where windows overlap, the lowest limit wins. Tenant: `organization`."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Entered by hand"
        TARIFF = "tariff", "Generated from a tariff's peak periods"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="load_schedules")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="load_schedules")
    name = models.CharField(max_length=200)
    days_of_week = models.JSONField(
        default=list, help_text="ISO weekdays the window starts on, 1 = Monday … 7 = Sunday"
    )
    start_time = models.TimeField(help_text="Local time the window starts")
    end_time = models.TimeField(help_text="Local time it ends (before the start: the next day)")
    valid_from = models.DateField(null=True, blank=True)
    valid_to = models.DateField(null=True, blank=True)
    max_import_kw = models.FloatField(null=True, blank=True)
    max_export_kw = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    source_reference = models.CharField(
        max_length=200, blank=True, default="", help_text="e.g. the tariff it came from"
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["site", "is_active"], name="load_schedule_site_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_import_kw__isnull=True) | Q(max_import_kw__gte=0), name="load_schedule_import_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(max_export_kw__isnull=True) | Q(max_export_kw__gte=0), name="load_schedule_export_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DemandResponseEvent(TenantModel):
    """A grid operator's request to hold the site below a limit (or cut a share of it) in a window.
    Overlapping events: the lowest resulting limit wins. `demand_response` is published when one
    starts and when it ends. Tenant: `organization`."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        ACTIVE = "active"
        ENDED = "ended"
        CANCELLED = "cancelled"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="demand_response_events")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="demand_response_events")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    limit_kw = models.FloatField(null=True, blank=True, help_text="Hold the site's import at or below this, kW")
    reduction_percent = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Or cut the effective limit by this share",
    )
    program = models.CharField(max_length=200, blank=True, default="", help_text="Who asked (programme, operator)")
    external_id = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    started_published_at = models.DateTimeField(null=True, blank=True, editable=False)
    ended_published_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "id"]
        indexes = [models.Index(fields=["site", "starts_at", "ends_at"], name="load_dr_site_window_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="load_dr_end_after_start"),
            models.CheckConstraint(
                condition=Q(limit_kw__isnull=False, reduction_percent__isnull=True)
                | Q(limit_kw__isnull=True, reduction_percent__isnull=False),
                name="load_dr_limit_or_reduction",
            ),
            models.CheckConstraint(condition=Q(limit_kw__isnull=True) | Q(limit_kw__gte=0), name="load_dr_limit_gte_0"),
        ]

    def __str__(self) -> str:
        return f"Demand response at site {self.site_id} {self.starts_at:%Y-%m-%d %H:%M}"


class Charger(TenantModel):
    """An EV charging station: a meter of kind `ev_charger` (its readings are the station's power
    and energy) with its OCPP identity and what the allocator may ask of it. A higher `priority`
    is served first. Tenant: `organization` (the meter's)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="chargers")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="chargers")
    meter = models.OneToOneField(Meter, on_delete=models.CASCADE, related_name="charger")
    charging_station_id = models.CharField(
        max_length=48, unique=True, help_text="The OCPP identity in ws://…/ocpp/{charging_station_id}"
    )
    password_hash = models.CharField(
        max_length=128, blank=True, default="", editable=False, help_text="OCPP security profile 1 (HTTP Basic)"
    )
    min_current_a = models.FloatField(default=6.0, help_text="Per phase; IEC 61851 needs at least 6 A to charge")
    max_current_a = models.FloatField(default=32.0, help_text="Per phase")
    phases = models.PositiveSmallIntegerField(default=3, choices=[(1, "Single phase"), (3, "Three phase")])
    priority = models.IntegerField(default=0, help_text="Higher is served first")
    vendor = models.CharField(max_length=50, blank=True, default="", editable=False)
    model = models.CharField(max_length=50, blank=True, default="", editable=False)
    serial_number = models.CharField(max_length=25, blank=True, default="", editable=False)
    firmware_version = models.CharField(max_length=50, blank=True, default="", editable=False)
    is_online = models.BooleanField(default=False, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(min_current_a__gte=0), name="load_charger_min_gte_0"),
            models.CheckConstraint(
                condition=Q(max_current_a__gte=models.F("min_current_a")), name="load_charger_max_gte_min"
            ),
        ]

    def __str__(self) -> str:
        return self.charging_station_id


class Evse(TenantModel):
    """One EVSE (and connector) of a charger, with the status the station last reported.
    Tenant: `organization`."""

    class Status(models.TextChoices):
        AVAILABLE = "Available"
        OCCUPIED = "Occupied"
        RESERVED = "Reserved"
        UNAVAILABLE = "Unavailable"
        FAULTED = "Faulted"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="evses")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="evses")
    evse_id = models.PositiveIntegerField()
    connector_id = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNAVAILABLE)
    max_current_a = models.FloatField(null=True, blank=True, help_text="Per phase, when below the charger's")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charger_id", "evse_id", "connector_id"]
        verbose_name = "EVSE"
        constraints = [
            models.UniqueConstraint(fields=["charger", "evse_id", "connector_id"], name="uniq_load_evse_connector")
        ]

    def __str__(self) -> str:
        return f"{self.charger_id}/{self.evse_id}/{self.connector_id}"


class IdToken(TenantModel):
    """An ID token (RFID card, app key, …) the organization's chargers accept on OCPP Authorize
    and TransactionEvent. Tenant: `organization`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="id_tokens")
    id_token = models.CharField(max_length=36)
    type = models.CharField(max_length=20, default="ISO14443", help_text="OCPP IdTokenEnumType")
    label = models.CharField(max_length=200, blank=True, default="")
    is_active = models.BooleanField(default=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "ID token"
        constraints = [models.UniqueConstraint(fields=["organization", "id_token", "type"], name="uniq_load_id_token")]

    def __str__(self) -> str:
        return f"{self.label or self.id_token} ({self.type})"


class ChargingSession(TenantModel):
    """One vehicle's charge at a charger: opened by the station (OCPP TransactionEvent Started)
    or by the API (energy wanted, departure). Tenant: `organization`."""

    class State(models.TextChoices):
        REQUESTED = "requested", "Requested (waiting for the station)"
        ACTIVE = "active", "Charging or ready to"
        SUSPENDED = "suspended", "Paused by the allocator or the vehicle"
        ENDED = "ended", "Ended"

    class Source(models.TextChoices):
        OCPP = "ocpp", "Started at the station"
        API = "api", "Requested over the API"

    OPEN = frozenset({State.REQUESTED, State.ACTIVE, State.SUSPENDED})

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="charging_sessions")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="charging_sessions")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="sessions")
    evse = models.ForeignKey(Evse, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions")
    transaction_id = models.CharField(max_length=36, null=True, blank=True, help_text="The station's transactionId")
    remote_start_id = models.PositiveIntegerField(null=True, blank=True, editable=False)
    id_token = models.CharField(max_length=36, blank=True, default="")
    source = models.CharField(max_length=8, choices=Source.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.REQUESTED)
    energy_wanted_kwh = models.FloatField(null=True, blank=True)
    departure_at = models.DateTimeField(null=True, blank=True)
    priority_override = models.IntegerField(null=True, blank=True, help_text="Replaces the charger's priority")
    energy_delivered_kwh = models.FloatField(default=0.0)
    meter_start_kwh = models.FloatField(null=True, blank=True, editable=False)
    stop_reason = models.CharField(max_length=50, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["site", "state"], name="load_session_site_state_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["charger", "transaction_id"],
                condition=Q(transaction_id__isnull=False),
                name="uniq_load_session_transaction",
            )
        ]

    def __str__(self) -> str:
        return f"Session {self.transaction_id or self.pk} at {self.charger_id}"


class Allocation(TenantModel):
    """One run of the allocator for a site: the limit it worked from, where that limit came
    from, and what was left for the chargers. Its setpoints are the history the API shows.
    Tenant: `organization`."""

    class LimitSource(models.TextChoices):
        CONSTRAINT = "constraint"
        SCHEDULE = "schedule"
        DEMAND_RESPONSE = "demand_response"
        PEAK = "peak"
        FALLBACK = "fallback", "Fallback (grid reading stale)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="load_allocations")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="load_allocations")
    computed_at = models.DateTimeField()
    effective_limit_w = models.FloatField()
    limit_source = models.CharField(max_length=20, choices=LimitSource.choices)
    grid_power_w = models.FloatField(null=True, blank=True, help_text="The grid meter's power used (import positive)")
    non_controllable_w = models.FloatField(default=0.0)
    available_w = models.FloatField(help_text="What the chargers could share")
    allocated_w = models.FloatField(default=0.0)
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["site", "-computed_at"], name="load_alloc_site_time_idx")]

    def __str__(self) -> str:
        return f"Allocation at site {self.site_id} {self.computed_at:%Y-%m-%d %H:%M:%S}"


class Setpoint(TenantModel):
    """What one session was allowed by an allocation (0 W and `paused` when it did not fit), and
    the command that carried it to the station as a charging profile. Tenant: `organization`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="load_setpoints")
    allocation = models.ForeignKey(Allocation, on_delete=models.CASCADE, related_name="setpoints")
    session = models.ForeignKey(ChargingSession, on_delete=models.CASCADE, related_name="setpoints")
    charger = models.ForeignKey(Charger, on_delete=models.CASCADE, related_name="setpoints")
    power_w = models.FloatField()
    current_a = models.FloatField(help_text="Per phase")
    paused = models.BooleanField(default=False)
    command = models.ForeignKey(DeviceCommand, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["charger", "-created_at"], name="load_setpoint_charger_idx"),
            # The allocator reads each open session's latest setpoint every run.
            models.Index(fields=["session", "-created_at"], name="load_setpoint_session_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.current_a:.1f} A for session {self.session_id}"
