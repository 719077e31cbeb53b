"""make run's demo: the demo tenant gets an anomaly model in production on its grid meter and a
PV forecaster in production on its PV meter, trained on a week of simulated history, once."""

from __future__ import annotations

import pytest

from energy.demo import demo_ensure
from energy.models import Meter, Reading
from mlops.models import DatasetVersion, ModelAlias, RegisteredModel, TrainingJob

pytestmark = pytest.mark.django_db


def test_the_demo_trains_and_promotes_an_anomaly_model_once(tmp_path):
    data = demo_ensure(state_path=tmp_path / "demo.json")
    model = RegisteredModel.objects.get(pk=data["mlops"]["anomaly_model_id"])
    grid = Meter.objects.get(organization=model.organization, kind="grid")
    assert Reading.objects.filter(meter=grid).count() == 7 * 96
    assert DatasetVersion.objects.get(dataset_id=data["mlops"]["dataset_id"]).status == "ready"
    assert TrainingJob.objects.get(model=model).status == "succeeded"
    alias = ModelAlias.objects.get(assignment__meter=grid, alias="production")
    assert alias.version.model == model and alias.version.threshold is not None

    pv_model = RegisteredModel.objects.get(pk=data["mlops"]["pv_model_id"])
    pv = Meter.objects.get(organization=model.organization, kind="pv")
    pv_alias = ModelAlias.objects.get(assignment__meter=pv, assignment__purpose="pv_forecast", alias="production")
    assert pv_alias.version.model == pv_model and pv_alias.version.trainer == "pv_forecaster"
    assert pv_alias.version.metrics["performance_ratio_w_per_w_m2"] > 0

    again = demo_ensure(state_path=tmp_path / "demo.json")
    assert again["mlops"]["anomaly_model_id"] == model.pk and again["mlops"]["pv_model_id"] == pv_model.pk
    assert RegisteredModel.objects.count() == 2 and Reading.objects.filter(meter=grid).count() == 7 * 96
