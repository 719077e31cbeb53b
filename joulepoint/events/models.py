"""The outbox: events that must not be lost are rows written in their cause's transaction."""

from __future__ import annotations

import uuid

from django.db import models

from joulepoint.tenancy.models import Organization, TenantModel


class OutboxEvent(TenantModel):
    """A must-not-lose event; pending until every subscriber has been called once in a worker."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DISPATCHED = "dispatched"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="outbox_events")
    key = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField()
    source = models.CharField(max_length=100)
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="outbox_pending_idx")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
