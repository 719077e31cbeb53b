"""joulepoint.platform.db: the ingest path's statements are planned once per connection on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from energy.ingest import store
from energy.models import Reading

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"),
]

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ingest(meter, seconds: int, power: float = 1000.0) -> store.IngestResult:
    item = {"timestamp": (T0 + timedelta(seconds=seconds)).isoformat(), "total_power": power, "voltage_a": 230.0}
    return store.reading_batch_ingest(device=meter, items=[item], source="test")


def prepared_ingest_statements() -> list[tuple[str, int, int]]:
    """(statement, generic plans, custom plans) of this connection's prepared ingest statements."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE %s OR statement LIKE %s ORDER BY statement",
            ["%INSERT INTO energy_reading%", "%open_event_count%"],
        )
        return cursor.fetchall()


def test_the_insert_and_the_quiet_check_keep_one_generic_plan(meter):
    for second in range(3):
        assert ingest(meter, second).stored == 1
    statements = prepared_ingest_statements()
    assert len(statements) == 2  # the INSERT and the quiet check, prepared once each
    for _, generic_plans, custom_plans in statements:
        assert (generic_plans, custom_plans) == (3, 0)
    assert Reading.objects.filter(meter=meter).count() == 3
    assert ingest(meter, 0).duplicates == 1  # the prepared INSERT still skips a stored (meter, ts)


def test_a_connection_opened_per_request_prepares_nothing(meter, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    before = prepared_ingest_statements()
    assert ingest(meter, 0).stored == 1
    assert prepared_ingest_statements() == before
