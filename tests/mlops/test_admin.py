"""The MLOps admin: a facility manager sees their organization's rows (read-mostly) and can
promote a version from the model versions page; another organization's rows stay hidden."""

from __future__ import annotations

import pytest
from django.test import Client

from mlops.models import ModelAlias
from tests import factories

pytestmark = pytest.mark.django_db
PAGES = ["dataset", "datasetversion", "trainingjob", "registeredmodel", "modelversion", "assignment", "promotion",
         "inferencerun"]  # fmt: skip


@pytest.fixture
def browser(owner):
    client = Client()
    client.force_login(owner)
    return client


def test_every_page_lists_own_rows_only(browser, org, other_org, meter):
    factories.DatasetFactory(organization=org, name="Own dataset", meters=[meter])
    factories.DatasetFactory(organization=other_org, name="Foreign dataset")
    for page in PAGES:
        response = browser.get(f"/admin/mlops/{page}/")
        assert response.status_code == 200, page
    listed = browser.get("/admin/mlops/dataset/").content.decode()
    assert "Own dataset" in listed and "Foreign dataset" not in listed


def test_promote_to_production_from_the_versions_page(browser, org, meter):
    assignment = factories.AssignmentFactory(model=factories.RegisteredModelFactory(organization=org), meter=meter)
    version = factories.ModelVersionFactory(model=assignment.model)
    response = browser.post(
        "/admin/mlops/modelversion/", {"action": "promote_production", "_selected_action": [version.pk]}
    )
    assert response.status_code == 302
    alias = ModelAlias.objects.get(assignment=assignment, alias="production")
    assert alias.version == version
    assert alias.version.promotions.get().actor.startswith("user:")


def test_the_job_list_shows_what_an_external_trainer_last_reported(browser, org):
    factories.TrainingJobFactory(
        organization=org, trainer="external", status="running", progress_percent=40, progress_message="fold 2 of 5"
    )
    listed = browser.get("/admin/mlops/trainingjob/").content.decode()
    assert "40% · fold 2 of 5" in listed
