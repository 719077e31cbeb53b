"""Assignments and promotions: aliases move, the history is a chain, rollbacks are promotions,
failed and foreign versions are refused."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection

from mlops.models import ModelAlias, Promotion
from mlops.registry.services import promotion_create
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def assignment(org, meter):
    model = factories.RegisteredModelFactory(organization=org, name="Depot anomalies")
    return factories.AssignmentFactory(model=model, meter=meter)


def version(assignment, **kwargs):
    return factories.ModelVersionFactory(model=assignment.model, **kwargs)


def promote(api, assignment, version, alias="production", reason="better recall"):
    body = {"assignment": assignment.pk, "alias": alias, "version": version.pk, "reason": reason}
    return api.post("/api/ml/promotions", body, format="json")


def test_assign_a_model_to_a_meter(api, org, meter):
    model = factories.RegisteredModelFactory(organization=org)
    response = api.post(
        "/api/ml/assignments", {"model": model.pk, "purpose": "anomaly", "meter": meter.pk}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["meter"] == meter.pk and response.json()["aliases"] == {}


@pytest.mark.parametrize(
    "body,field",
    [
        ({"purpose": "anomaly"}, "meter"),  # no target
        ({"purpose": "anomaly", "meter": "METER", "site": "SITE"}, "meter"),  # two targets
        ({"purpose": "demand_forecast", "meter": "METER"}, "purpose"),  # not the model's purpose
        ({"purpose": "weather", "meter": "METER"}, "purpose"),
    ],
)
def test_bad_assignments_are_400(api, org, meter, body, field):
    model = factories.RegisteredModelFactory(organization=org)
    body = {key: {"METER": meter.pk, "SITE": meter.site_id}.get(value, value) for key, value in body.items()}
    response = api.post("/api/ml/assignments/", {"model": model.pk, **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_promote_rollback_and_the_history(api, assignment):
    first, second = version(assignment), version(assignment)
    response = promote(api, assignment, first)
    assert response.status_code == 201, response.content
    assert response.json()["previous_version"] is None and response.json()["actor"].startswith("client:")
    assert promote(api, assignment, second).json()["previous_version"] == first.pk
    rollback = promote(api, assignment, first, reason="second one was noisy")
    assert rollback.json()["previous_version"] == second.pk
    assert ModelAlias.objects.get(assignment=assignment, alias="production").version == first
    history = api.get("/api/ml/promotions", {"assignment": assignment.pk}).json()["results"]
    assert [(row["version"], row["previous_version"]) for row in history] == [
        (first.pk, second.pk), (second.pk, first.pk), (first.pk, None)
    ]  # fmt: skip
    assert api.get(f"/api/ml/assignments/{assignment.pk}").json()["aliases"] == {"production": first.pk}


def test_aliases_are_independent_and_named_challengers_allowed(api, assignment):
    first, second = version(assignment), version(assignment)
    promote(api, assignment, first)
    promote(api, assignment, second, alias="staging")
    assert promote(api, assignment, second, alias="challenger-b").status_code == 201
    assert promote(api, assignment, second, alias="Not An Alias").status_code == 400
    aliases = api.get(f"/api/ml/assignments/{assignment.pk}").json()["aliases"]
    assert aliases == {"production": first.pk, "staging": second.pk, "challenger-b": second.pk}


def test_a_failed_version_cannot_be_promoted(api, assignment, org):
    failed = version(assignment, status="failed")
    response = promote(api, assignment, failed)
    assert response.status_code == 400 and "version" in response.json()
    job = factories.TrainingJobFactory(
        dataset_version__dataset__organization=org, model=assignment.model, status="failed"
    )
    assert promote(api, assignment, version(assignment, job=job)).status_code == 400
    assert not Promotion.objects.exists() and not ModelAlias.objects.exists()


def test_a_foreign_or_other_models_version_cannot_be_promoted(api, assignment, org, other_org):
    foreign = factories.ModelVersionFactory(model__organization=other_org)
    assert promote(api, assignment, foreign).status_code == 400
    other_model = factories.ModelVersionFactory(model__organization=org)
    response = promote(api, assignment, other_model)
    assert response.status_code == 400 and "version" in response.json()
    assert not Promotion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_promotions_of_one_alias_leave_a_consistent_history(org, meter):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serializes writers anyway; the row lock is exercised on PostgreSQL")
    model = factories.RegisteredModelFactory(organization=org)
    assignment = factories.AssignmentFactory(model=model, meter=meter)
    versions = [factories.ModelVersionFactory(model=model) for _ in range(6)]
    barrier = threading.Barrier(len(versions))

    def promote_one(candidate):
        barrier.wait()
        try:
            promotion_create(organization=org, assignment=assignment, alias="production", version=candidate)
        finally:
            connection.close()

    threads = [threading.Thread(target=promote_one, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = list(Promotion.objects.filter(assignment=assignment).order_by("id"))
    assert len(history) == len(versions)
    assert history[0].previous_version is None
    for before, after in itertools.pairwise(history):
        assert after.previous_version_id == before.version_id  # a chain, nobody's previous lost
    assert ModelAlias.objects.get(assignment=assignment, alias="production").version_id == history[-1].version_id
