"""Shared reads of automations rows: annotations for the analytics API and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automations.selectors import annotations_for_meters
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)


def test_annotations_for_meters_in_range_oldest_first_and_limited(org, meter):
    later = factories.AnnotationFactory(meter=meter, ts=T0 + timedelta(minutes=10))
    first = factories.AnnotationFactory(meter=meter, ts=T0)
    factories.AnnotationFactory(meter=meter, ts=T0 + timedelta(hours=1))  # end is exclusive
    rows = annotations_for_meters(
        organization_id=org.pk, meter_ids=[meter.pk], start=T0, end=T0 + timedelta(hours=1), limit=10
    )
    assert [row["id"] for row in rows] == [first.pk, later.pk]
    assert set(rows[0]) == {"id", "meter_id", "ts", "text", "source", "rule_id"}
    assert (
        len(annotations_for_meters(organization_id=org.pk, meter_ids=[meter.pk], start=T0, end=later.ts, limit=1)) == 1
    )


def test_annotations_for_meters_stay_in_the_organization(org, other_org, meter):
    factories.AnnotationFactory(meter=meter, ts=T0)
    foreign = factories.AnnotationFactory(meter=meter, organization=other_org, ts=T0)
    # Asking as the other organization about our meter finds only its own (corrupted) row …
    rows = annotations_for_meters(
        organization_id=other_org.pk, meter_ids=[meter.pk], start=T0, end=T0 + timedelta(hours=1), limit=10
    )
    assert [row["id"] for row in rows] == [foreign.pk]
    # … and asking as us never returns it.
    ours = annotations_for_meters(
        organization_id=org.pk, meter_ids=[meter.pk], start=T0, end=T0 + timedelta(hours=1), limit=10
    )
    assert foreign.pk not in {row["id"] for row in ours} and len(ours) == 1
