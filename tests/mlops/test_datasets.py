"""Datasets: define, build in a worker into versioned Parquet, download; bad input refused."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pytest

from mlops.models import Dataset, DatasetVersion
from tests import factories
from tests.mlops.conftest import build, make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


def download(api, dataset_id: int, number: int):
    response = api.get(f"/api/ml/datasets/{dataset_id}/versions/{number}/download")
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content)


def test_build_writes_a_versioned_parquet_with_the_derived_features(api, history, eager_tasks):
    dataset = make_dataset(api, history)
    version = build(api, dataset["id"])
    assert version["status"] == "ready", version["error"]
    assert version["number"] == 1
    assert version["row_count"] == 7 * 96
    columns = [column["name"] for column in version["schema"]]
    assert columns[:2] == ["meter_id", "ts"]
    assert {"local_hour", "weekday", "holiday", "total_power", "total_power_rolling_mean_1h"} <= set(columns)
    assert "total_power_lag_1d" in columns

    body = download(api, dataset["id"], 1)
    assert hashlib.sha256(body).hexdigest() == version["checksum"]
    frame = pd.read_parquet(io.BytesIO(body))
    assert len(frame) == 7 * 96
    first = frame.iloc[0]
    # 2025-10-06 00:00 UTC is 02:00 in Berlin, a Monday; the lag of a day is unknown on day one.
    assert first["local_hour"] == 2 and first["weekday"] == 0 and pd.isna(first["total_power_lag_1d"])
    assert frame["total_power_lag_1d"].iloc[96] == pytest.approx(frame["total_power"].iloc[0])
    assert frame["holiday"].sum() == 0  # no German public holiday that week


def test_a_rebuild_is_a_new_version_and_the_old_one_stays_downloadable(api, history, eager_tasks):
    dataset = make_dataset(api, history)
    first = build(api, dataset["id"])
    factories.readings_create(
        history, [{"ts": pd.Timestamp("2025-10-12T23:52:00Z").to_pydatetime(), "total_power": 1.0}]
    )
    second = build(api, dataset["id"])
    assert (first["number"], second["number"]) == (1, 2)
    assert download(api, dataset["id"], 1) != download(api, dataset["id"], 2)
    listed = api.get(f"/api/ml/datasets/{dataset['id']}/versions/").json()
    assert [v["number"] for v in listed] == [2, 1]
    assert api.get(f"/api/ml/datasets/{dataset['id']}").json()["latest_version"]["number"] == 2


def test_no_rows_in_range_fails_the_build_with_a_clear_error(api, meter, eager_tasks):
    dataset = make_dataset(api, meter)
    version = build(api, dataset["id"])
    assert version["status"] == "failed"
    assert "No readings of total_power" in version["error"]
    assert version["row_count"] is None
    response = api.get(f"/api/ml/datasets/{dataset['id']}/versions/1/download")
    assert response.status_code == 409


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"fields": ["total_power", "colour"]}, "fields"),
        ({"features": ["lag_1y"]}, "features"),
        ({"end": "2025-10-01T00:00:00Z"}, "end"),
        ({"holiday_country": "XX"}, "holiday_country"),
        ({"meters": []}, "meters"),
    ],
)
def test_bad_definitions_are_400_naming_the_field(api, meter, overrides, field):
    body = {"name": "x", "meters": [meter.pk], "fields": ["total_power"], "start": "2025-10-06T00:00:00Z",
            "end": "2025-10-13T00:00:00Z", **overrides}  # fmt: skip
    response = api.post("/api/ml/datasets/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Dataset.objects.exists()


def test_a_meter_of_another_organization_is_refused(api, other_org):
    foreign = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    body = {"name": "x", "meters": [foreign.pk], "fields": ["total_power"], "start": "2025-10-06T00:00:00Z",
            "end": "2025-10-13T00:00:00Z"}  # fmt: skip
    response = api.post("/api/ml/datasets", body, format="json")
    assert response.status_code == 400
    assert "meters" in response.json()
    assert not Dataset.objects.exists()


def test_a_group_or_site_is_a_source_too(api, history, eager_tasks, org):
    group = factories.MeterGroupFactory(organization=org, meters=[history])
    by_group = make_dataset(api, history, meters=[], group=group.pk)
    by_site = make_dataset(api, history, meters=[], site=history.site_id)
    assert build(api, by_group["id"])["row_count"] == build(api, by_site["id"])["row_count"] == 7 * 96


def test_a_dataset_a_job_trained_on_is_kept(api, trained):
    _model, job, _version = trained
    dataset_id = DatasetVersion.objects.get(pk=job["dataset_version"]).dataset_id
    assert api.delete(f"/api/ml/datasets/{dataset_id}").status_code == 409
    assert Dataset.objects.filter(pk=dataset_id).exists()
