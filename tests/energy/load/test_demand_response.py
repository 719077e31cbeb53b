"""Demand response announcements: once at the start, once at the end, also across racing runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from energy.load.demand_response import demand_response_cancel, demand_responses_announce
from energy.load.models import DemandResponseEvent
from joulepoint.events.models import OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db


def _phases():
    return [row.payload["phase"] for row in OutboxEvent.objects.filter(key="demand_response").order_by("occurred_at")]


def test_start_and_end_are_announced_once_each(site):
    now = timezone.now()
    event = factories.DemandResponseEventFactory(site=site, starts_at=now + timedelta(minutes=5), limit_kw=10.0)
    assert demand_responses_announce(now=now) == 0
    assert demand_responses_announce(now=now + timedelta(minutes=6)) == 1
    assert demand_responses_announce(now=now + timedelta(minutes=7)) == 0
    event.refresh_from_db()
    assert event.status == DemandResponseEvent.Status.ACTIVE and event.started_published_at is not None
    assert demand_responses_announce(now=now + timedelta(hours=2)) == 1
    assert demand_responses_announce(now=now + timedelta(hours=3)) == 0
    assert _phases() == ["started", "ended"]
    payload = OutboxEvent.objects.filter(key="demand_response").first().payload
    assert payload["site_id"] == site.pk and payload["demand_response_id"] == event.pk and payload["limit_kw"] == 10.0


def test_an_event_entirely_in_the_past_is_announced_started_then_ended(site):
    now = timezone.now()
    factories.DemandResponseEventFactory(
        site=site, starts_at=now - timedelta(hours=3), reduction_percent=20.0, limit_kw=None
    )
    assert demand_responses_announce(now=now) == 2
    assert _phases() == ["started", "ended"]


def test_cancelling_an_active_event_ends_it_once(site):
    now = timezone.now()
    event = factories.DemandResponseEventFactory(site=site, starts_at=now - timedelta(minutes=1))
    demand_responses_announce(now=now)
    demand_response_cancel(event=event, now=now + timedelta(minutes=1))
    demand_response_cancel(event=event, now=now + timedelta(minutes=2))
    assert demand_responses_announce(now=now + timedelta(hours=2)) == 0
    assert _phases() == ["started", "ended"]


def test_a_cancelled_scheduled_event_is_never_announced(site):
    now = timezone.now()
    event = factories.DemandResponseEventFactory(site=site, starts_at=now + timedelta(minutes=1))
    demand_response_cancel(event=event, now=now)
    assert demand_responses_announce(now=now + timedelta(hours=3)) == 0
    assert _phases() == []
