"""Dataset labels: power quality events, protection events and annotations land in the built
Parquet as a 0/1 flag and the text of what labelled each step, and nowhere else."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import pytest

from energy.power_quality.models import PQEvent, ProtectionEvent
from tests import factories
from tests.mlops.conftest import build, make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def pq_event(meter, kind: str, start: str, end: str | None, last: str) -> PQEvent:
    return PQEvent.objects.create(
        organization=meter.organization, meter=meter, kind=kind, start=at(start), end=at(end) if end else None,
        last_violation_at=at(last), worst_value=0.8, unit="pu", threshold=0.9,
    )  # fmt: skip


@pytest.fixture
def events(history, other_org):
    meter = history
    pq_event(meter, "sag", "2025-10-07T10:05:00", "2025-10-07T10:20:00", "2025-10-07T10:19:00")
    pq_event(meter, "swell", "2025-10-07T10:10:00", "2025-10-07T10:12:00", "2025-10-07T10:11:00")
    pq_event(meter, "thd", "2025-10-08T00:01:00", None, "2025-10-08T00:02:00")  # still open
    pq_event(meter, "sag", "2025-10-20T00:00:00", "2025-10-20T00:01:00", "2025-10-20T00:00:30")  # after the range
    ProtectionEvent.objects.create(
        organization=meter.organization, meter=meter, kind="trip", occurred_at=at("2025-10-09T03:07:00")
    )
    factories.AnnotationFactory(meter=meter, ts=at("2025-10-10T12:44:00"), text="Filter replaced")
    factories.AnnotationFactory(meter=meter, ts=at("2025-10-10T12:31:00"), text="Door open")
    # Another organization's meter: never in this dataset, whatever happens on it.
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    factories.AnnotationFactory(meter=foreign, ts=at("2025-10-10T12:44:00"), text="Not yours")
    return meter


def parquet(api, dataset_id: int, number: int) -> pd.DataFrame:
    response = api.get(f"/api/ml/datasets/{dataset_id}/versions/{number}/download")
    assert response.status_code == 200
    return pd.read_parquet(io.BytesIO(b"".join(response.streaming_content)))


def labelled(frame: pd.DataFrame, flag: str, text: str) -> dict[str, str]:
    rows = frame[frame[flag] == 1]
    return {ts.strftime("%m-%d %H:%M"): value for ts, value in zip(rows["ts"], rows[text], strict=True)}


def test_labels_land_in_the_parquet_on_the_steps_the_events_touch(api, events, eager_tasks):
    dataset = make_dataset(api, events, labels=["pq_events", "protection_events", "annotations"])
    assert dataset["labels"] == ["pq_events", "protection_events", "annotations"]
    version = build(api, dataset["id"])
    assert version["status"] == "ready", version["error"]
    columns = [column["name"] for column in version["schema"]]
    assert columns[-6:] == [
        "label_pq_event", "label_pq_kinds", "label_protection_event", "label_protection_kinds",
        "label_annotation", "label_annotation_text",
    ]  # fmt: skip

    frame = parquet(api, dataset["id"], version["number"])
    assert len(frame) == version["row_count"] == 7 * 96
    assert labelled(frame, "label_pq_event", "label_pq_kinds") == {
        "10-07 10:00": "sag,swell",
        "10-07 10:15": "sag",
        "10-08 00:00": "thd",
    }
    assert labelled(frame, "label_protection_event", "label_protection_kinds") == {"10-09 03:00": "trip"}
    annotated = labelled(frame, "label_annotation", "label_annotation_text")
    assert annotated == {"10-10 12:30": "Door open | Filter replaced"}
    assert frame["label_pq_event"].dtype == "int8" and set(frame["label_pq_kinds"]) == {"", "sag", "sag,swell", "thd"}


def test_a_dataset_without_labels_has_no_label_columns(api, events, eager_tasks):
    version = build(api, make_dataset(api, events)["id"])
    assert not [column for column in version["schema"] if column["name"].startswith("label_")]


def test_a_step_without_events_gets_zero_and_empty_text(api, history, eager_tasks):
    dataset = make_dataset(api, history, labels=["pq_events", "annotations"])
    frame = parquet(api, dataset["id"], build(api, dataset["id"])["number"])
    assert (frame["label_pq_event"] == 0).all() and (frame["label_annotation_text"] == "").all()
    assert "label_protection_event" not in frame


def test_an_unknown_label_is_a_400_naming_labels(api, history):
    body = {"name": "x", "meters": [history.pk], "fields": ["total_power"], "labels": ["weather"],
            "start": "2025-10-06T00:00:00Z", "end": "2025-10-13T00:00:00Z"}  # fmt: skip
    response = api.post("/api/ml/datasets", body, format="json")
    assert response.status_code == 400 and "labels" in response.json()
