"""The annotations seam of the analytics package: energy reads annotations only through the
reader automations registers, and has none without it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from energy.analytics import annotations
from tests import factories

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)


def test_automations_registers_its_reader_at_start_up():
    from automations.selectors import annotations_for_meters

    assert annotations._reader is annotations_for_meters


def test_without_a_reader_there_are_no_annotations(meter, monkeypatch):
    factories.AnnotationFactory(meter=meter, ts=T0)
    monkeypatch.setattr(annotations, "_reader", None)
    items, truncated = annotations.annotations_read(
        organization_id=meter.organization_id, meter_ids=[meter.pk], start=T0, end=T0 + timedelta(hours=1)
    )
    assert items == [] and truncated is False


def test_no_meters_asks_no_reader(monkeypatch):
    def reader(**kwargs):
        raise AssertionError("not called for an empty subject")

    monkeypatch.setattr(annotations, "_reader", reader)
    assert annotations.annotations_read(organization_id=1, meter_ids=[], start=T0, end=T0) == ([], False)


def test_one_more_than_the_limit_is_asked_for_to_know_about_truncation(monkeypatch):
    asked = {}

    def reader(**kwargs):
        asked.update(kwargs)
        return [
            {"id": i, "meter_id": 7, "ts": T0 + timedelta(minutes=i), "text": "x", "source": "user", "rule_id": None}
            for i in range(kwargs["limit"])
        ]

    monkeypatch.setattr(annotations, "_reader", reader)
    items, truncated = annotations.annotations_read(
        organization_id=3, meter_ids=[7], start=T0, end=T0 + timedelta(hours=1), limit=2
    )
    assert asked["limit"] == 3 and asked["organization_id"] == 3 and asked["meter_ids"] == [7]
    assert [item["ts"] for item in items] == ["2026-06-10T10:00:00Z", "2026-06-10T10:01:00Z"] and truncated
