"""energy.analytics.selectors on PostgreSQL, where the rollups frame is read with COPY."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from django.db import connection

from energy.analytics.models import ReadingRollup15m
from energy.analytics.selectors import rollups_15m_frame
from energy.analytics.subjects import TimeRange
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY read is PostgreSQL's"),
]

T0 = datetime(2025, 10, 6, tzinfo=UTC)


def test_rollups_frame_holds_each_meters_buckets_in_order_with_gaps_as_nan(site):
    first, second, other = (factories.MeterFactory(site=site) for _ in range(3))
    ReadingRollup15m.objects.bulk_create(
        [
            ReadingRollup15m(meter=second, ts=T0, n=15, total_power_avg=1200.5, power_factor_avg=0.97),
            ReadingRollup15m(meter=first, ts=T0 + timedelta(minutes=15), n=15, total_power_avg=-75.0),
            ReadingRollup15m(meter=first, ts=T0, n=15, total_power_avg=4000.125, power_factor_avg=0.95),
            ReadingRollup15m(meter=other, ts=T0, n=15, total_power_avg=1.0),  # not asked for
            ReadingRollup15m(meter=first, ts=T0 + timedelta(hours=1), n=15, total_power_avg=9.0),  # after the end
        ]
    )

    frame = rollups_15m_frame(
        meter_ids=[first.pk, second.pk], time_range=TimeRange(T0, T0 + timedelta(hours=1)),
        fields=["total_power", "power_factor"],
    )  # fmt: skip

    assert frame["meter_id"].tolist() == [first.pk, first.pk, second.pk]
    assert frame["ts"].tolist() == [T0, T0 + timedelta(minutes=15), T0]
    assert frame["total_power"].tolist() == [4000.125, -75.0, 1200.5]
    assert frame["power_factor"].tolist()[0] == 0.95 and pd.isna(frame["power_factor"].tolist()[1])
    assert str(frame["ts"].dt.tz) == "UTC"


def test_rollups_frame_of_an_empty_range_is_empty_with_its_columns(site):
    meter = factories.MeterFactory(site=site)
    frame = rollups_15m_frame(
        meter_ids=[meter.pk], time_range=TimeRange(T0, T0 + timedelta(days=1)), fields=["total_power"]
    )
    assert frame.empty
    assert list(frame.columns) == ["meter_id", "ts", "total_power"]
