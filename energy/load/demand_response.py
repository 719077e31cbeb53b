"""Demand response events: creation with their rules, cancellation, and the announcements.

An event holds the site at `limit_kw` or cuts the limit in force by `reduction_percent` (exactly
one of them) from `starts_at` to `ends_at`. Overlapping events are allowed: the lowest resulting
limit wins (energy.load.limits). `demand_response` is published once when an event starts and
once when it ends (or is cancelled while active): the status moves by a conditional UPDATE, so
two beat processes racing on the same event publish once. Tenant: the site's organization.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from energy.events import DEMAND_RESPONSE
from energy.load import selectors
from energy.load.constraints import LoadInvalid
from energy.load.models import DemandResponseEvent
from energy.models import Site
from joulepoint.audit.registry import audited_update
from joulepoint.events import publish
from joulepoint.platform.timefmt import isoz

SOURCE = "energy.load"


def demand_response_check(*, values: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    limit_kw = values.get("limit_kw")
    reduction = values.get("reduction_percent")
    if (limit_kw is None) == (reduction is None):
        errors["limit_kw"] = "give exactly one of limit_kw and reduction_percent"
    if limit_kw is not None and limit_kw < 0:
        errors["limit_kw"] = "must be zero or more"
    if reduction is not None and not 0 <= reduction <= 100:
        errors["reduction_percent"] = "must be between 0 and 100"
    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        errors["ends_at"] = "must be after starts_at"
    if errors:
        raise LoadInvalid(errors)


@transaction.atomic
def demand_response_create(*, site: Site, values: dict[str, Any]) -> DemandResponseEvent:
    demand_response_check(values=values)
    return DemandResponseEvent.objects.create(organization_id=site.organization_id, site=site, **values)


def _payload(event: DemandResponseEvent, phase: str) -> dict:
    return {
        "site_id": event.site_id,
        "demand_response_id": event.pk,
        "phase": phase,
        "starts_at": isoz(event.starts_at),
        "ends_at": isoz(event.ends_at),
        "limit_kw": event.limit_kw,
        "reduction_percent": event.reduction_percent,
        "program": event.program,
        "external_id": event.external_id,
    }


def _announce(event: DemandResponseEvent, *, phase: str, occurred_at: datetime) -> None:
    publish(event.organization_id, DEMAND_RESPONSE, _payload(event, phase), source=SOURCE, occurred_at=occurred_at)


@transaction.atomic
def demand_response_cancel(*, event: DemandResponseEvent, now: datetime) -> DemandResponseEvent:
    """Cancel a scheduled or active event (an active one is announced as ended). Ended and
    cancelled events stay as they are."""
    was_active = (
        audited_update(
            DemandResponseEvent.objects.filter(pk=event.pk, status=DemandResponseEvent.Status.ACTIVE),
            status=DemandResponseEvent.Status.CANCELLED,
            ended_published_at=now,
        )
        == 1
    )
    if was_active:
        event.refresh_from_db()
        _announce(event, phase="ended", occurred_at=now)
        return event
    audited_update(
        DemandResponseEvent.objects.filter(pk=event.pk, status=DemandResponseEvent.Status.SCHEDULED),
        status=DemandResponseEvent.Status.CANCELLED,
    )
    event.refresh_from_db()
    return event


def demand_responses_announce(*, now: datetime) -> int:
    """Publish the starts and ends that have come (the beat task's room). Returns how many
    announcements this call made; running it again makes none."""
    announced = 0
    for event in selectors.demand_responses_due(now=now):
        with transaction.atomic():
            if event.status == DemandResponseEvent.Status.SCHEDULED:
                moved = audited_update(
                    DemandResponseEvent.objects.filter(pk=event.pk, status=DemandResponseEvent.Status.SCHEDULED),
                    status=DemandResponseEvent.Status.ACTIVE,
                    started_published_at=now,
                )
                if not moved:
                    continue
                _announce(event, phase="started", occurred_at=event.starts_at)
                announced += 1
            if event.ends_at <= now:
                moved = audited_update(
                    DemandResponseEvent.objects.filter(pk=event.pk, status=DemandResponseEvent.Status.ACTIVE),
                    status=DemandResponseEvent.Status.ENDED,
                    ended_published_at=now,
                )
                if moved:
                    _announce(event, phase="ended", occurred_at=event.ends_at)
                    announced += 1
    return announced
