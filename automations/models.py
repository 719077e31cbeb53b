"""Rules, actions, deliveries, alerts, relay commands, annotations and circuit breakers.

Every row belongs to one organization (directly or through one FK); API views, the admin and the
engine read them through `.for_org()`.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from joulepoint.tenancy.models import Application, Organization, TenantModel


class ActionType(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    PLUGIN_ACTION = "plugin_action", "Plugin action"
    RELAY_COMMAND = "relay_command", "Relay command (approval)"
    NOTIFY_EMAIL = "notify_email", "E-mail notification"
    ANNOTATE = "annotate", "Annotate the meter timeline"
    WALLET_TOPUP = "wallet_topup", "Wallet top-up"


class Severity(models.TextChoices):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


class Action(TenantModel):
    """Something a rule can do; `config` is validated by the action type's handler on save."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="automation_actions")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=ActionType.choices)
    config = models.JSONField(default=dict)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_action_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class Rule(TenantModel):
    """Fires its actions (and optionally an alert) when `jsonlogic` is true for an event of
    `event_key`, at most once per `throttle_seconds` per rendered `dedupe_template`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="automation_rules")
    # Names the rule's throttle keys in the cache; ids can repeat across databases, uids do not.
    uid = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    event_key = models.CharField(max_length=64, db_index=True)
    jsonlogic = models.JSONField()
    throttle_seconds = models.PositiveIntegerField(default=0)
    dedupe_template = models.CharField(max_length=300, blank=True, default="")
    alert_severity = models.CharField(max_length=10, choices=Severity.choices, blank=True, default="")
    alert_message_template = models.CharField(max_length=500, blank=True, default="")
    is_active = models.BooleanField(default=True)
    actions = models.ManyToManyField(Action, through="RuleAction", related_name="rules")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_rule_name")]
        indexes = [models.Index(fields=["organization", "event_key", "is_active"], name="rule_lookup_idx")]

    def __str__(self) -> str:
        return self.name


class RuleAction(TenantModel):
    """One action of a rule, run in `position` order."""

    tenant_path = "rule__organization"

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="rule_actions")
    action = models.ForeignKey(Action, on_delete=models.PROTECT, related_name="rule_actions")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["rule_id", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["rule", "action"], name="uniq_rule_action")]


class Delivery(TenantModel):
    """One execution of one action for one event (one reading of a batch counts as one event).

    States: pending → in_flight → succeeded, or → retrying (→ in_flight again) → dead;
    `deferred` while the endpoint's circuit breaker is open (not an attempt, never dropped);
    `waiting` when the service the action needs is not installed yet (wallet_topup → billing).
    `idempotency_key` (event, rule, action) makes re-running an evaluation harmless; for webhooks
    `webhook_id` stays the same across retries.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        IN_FLIGHT = "in_flight"
        RETRYING = "retrying"
        DEFERRED = "deferred"
        WAITING = "waiting"
        SUCCEEDED = "succeeded"
        DEAD = "dead"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="automation_deliveries")
    action = models.ForeignKey(Action, on_delete=models.SET_NULL, null=True, related_name="deliveries")
    action_type = models.CharField(max_length=20, choices=ActionType.choices)
    rule = models.ForeignKey(Rule, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries")
    event_id = models.CharField(max_length=80)
    event_key = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200, unique=True)
    webhook_id = models.CharField(max_length=64, blank=True, default="")
    endpoint = models.CharField(max_length=300, blank=True, default="", help_text="scheme://host:port")
    context = models.JSONField(default=dict, help_text="The event as the rule saw it")
    payload = models.JSONField(default=dict, help_text="What the action sends (rendered)")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["organization", "created_at"], name="delivery_org_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action_type} #{self.pk} ({self.status})"


class CircuitBreaker(TenantModel):
    """Per-organization, per-endpoint breaker: closed → open after N consecutive failures →
    half_open after the cool-down (one trial attempt) → closed on success, open again on failure.
    Lives in the database so every worker sees the same state."""

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="circuit_breakers")
    endpoint = models.CharField(max_length=300)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True)
    trial_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["endpoint"]
        constraints = [models.UniqueConstraint(fields=["organization", "endpoint"], name="uniq_breaker_endpoint")]

    def __str__(self) -> str:
        return f"{self.endpoint} ({self.state})"


class Alert(TenantModel):
    """Raised by a rule for a subject (its dedupe key, e.g. `meter:5`). While one is active or
    acknowledged, the same rule and subject update it (`occurrences`) instead of opening another."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ACKNOWLEDGED = "acknowledged"
        CLEARED = "cleared"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    rule = models.ForeignKey(Rule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    subject = models.CharField(max_length=300, blank=True, default="")
    meter = models.ForeignKey("energy.Meter", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    site = models.ForeignKey("energy.Site", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    message = models.CharField(max_length=500, blank=True, default="")
    event_id = models.CharField(max_length=80)
    event_key = models.CharField(max_length=64)
    event = models.JSONField(default=dict, help_text="The triggering event")
    occurrences = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.CharField(max_length=200, blank=True, default="")

    OPEN_STATUSES = (Status.ACTIVE, Status.ACKNOWLEDGED)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["organization", "status", "severity"], name="alert_list_idx")]
        constraints = [
            # Two workers evaluating the same rule at once must not both open an alert for one
            # subject: the second insert fails and counts its firing on the first (alert_raise).
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=models.Q(status__in=["active", "acknowledged"]),
                name="alert_one_open_per_rule_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.severity} {self.subject or self.event_key} ({self.status})"


class RelayCommand(TenantModel):
    """A relay open/close a rule asked for. Nothing reaches the device before a person (or a
    token with relay:approve) approves it; unapproved commands expire at `expires_at`."""

    class Status(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval"
        APPROVED = "approved"  # approved, waiting for the device downlink service
        SENT = "sent"  # handed to the downlink service
        REJECTED = "rejected"
        EXPIRED = "expired"
        FAILED = "failed"

    class Command(models.TextChoices):
        OPEN = "open"
        CLOSE = "close"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="relay_commands")
    meter = models.ForeignKey("energy.Meter", on_delete=models.CASCADE, related_name="relay_commands")
    command = models.CharField(max_length=10, choices=Command.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AWAITING_APPROVAL)
    approver_role = models.CharField(max_length=20, default="approver")
    delivery = models.OneToOneField(
        Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="relay_command"
    )
    rule = models.ForeignKey(Rule, on_delete=models.SET_NULL, null=True, blank=True, related_name="relay_commands")
    reason = models.CharField(max_length=500, blank=True, default="")
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_by_application = models.ForeignKey(
        Application, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_note = models.CharField(max_length=500, blank=True, default="")
    downlink_id = models.CharField(max_length=100, blank=True, default="")
    downlink_status = models.CharField(max_length=30, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="relay_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.command} meter {self.meter_id} ({self.status})"


class Annotation(TenantModel):
    """A note on a meter's timeline at `ts` (written by the annotate action, or by hand)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="annotations")
    meter = models.ForeignKey("energy.Meter", on_delete=models.CASCADE, related_name="annotations")
    ts = models.DateTimeField()
    text = models.CharField(max_length=1000)
    source = models.CharField(max_length=20, default="user")
    rule = models.ForeignKey(Rule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    delivery = models.OneToOneField(
        Delivery, on_delete=models.SET_NULL, null=True, blank=True, related_name="annotation"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["meter_id", "ts", "id"]
        indexes = [models.Index(fields=["meter", "ts"], name="annotation_meter_ts_idx")]

    def __str__(self) -> str:
        return f"{self.meter_id}@{self.ts:%Y-%m-%d %H:%M}: {self.text[:40]}"
