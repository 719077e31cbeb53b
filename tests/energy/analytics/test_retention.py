"""Retention settings: GET/PUT/PATCH /api/energy/analytics/settings, its rules, scopes and tenant scope."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from energy.analytics.models import AnalyticsSettings
from energy.analytics.policy import retention_for
from energy.analytics.retention import AnalyticsSettingsInvalid, analytics_settings_update, retention_enforce

pytestmark = pytest.mark.django_db

URL = "/api/energy/analytics/settings"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed when the test tokens are made; the real hasher is slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def stored(org) -> tuple:
    return AnalyticsSettings.objects.values_list(
        "raw_retention_days", "rollup_retention_days", "expected_interval_seconds"
    ).get(organization=org)


def test_without_a_row_the_platform_defaults_answer(api, settings):
    settings.ANALYTICS_RAW_RETENTION_DAYS = 90
    settings.ANALYTICS_ROLLUP_RETENTION_DAYS = 0  # 0: forever
    response = api.get(URL)
    assert response.status_code == 200
    assert response.json() == {
        "raw_retention_days": 90,
        "rollup_retention_days": None,
        "expected_interval_seconds": 60,
        "source": "defaults",
    }


@pytest.mark.parametrize("slash", ["", "/"])
def test_put_replaces_and_get_reads_it_back(api, org, slash):
    body = {"raw_retention_days": 30, "rollup_retention_days": 730, "expected_interval_seconds": 900}
    response = api.put(URL + slash, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {**body, "source": "organization"}
    assert stored(org) == (30, 730, 900)
    assert api.get(URL + slash).json() == {**body, "source": "organization"}
    # A PUT is a replacement: what it leaves out goes back to the model's defaults.
    response = api.put(URL, {"raw_retention_days": None, "rollup_retention_days": None}, format="json")
    assert response.json()["expected_interval_seconds"] == 60
    assert stored(org) == (None, None, 60)


def test_patch_changes_one_field_and_checks_the_rules_on_the_result(api, org):
    AnalyticsSettings.objects.create(organization=org, raw_retention_days=30, rollup_retention_days=365)
    response = api.patch(URL, {"rollup_retention_days": 400}, format="json")
    assert response.status_code == 200, response.content
    assert stored(org) == (30, 400, 60)
    # Raising raw retention above the stored rollup retention breaks the rule: 400, nothing written.
    response = api.patch(URL, {"raw_retention_days": 500}, format="json")
    assert response.status_code == 400
    assert "at least raw_retention_days (500)" in response.json()["rollup_retention_days"][0]
    assert stored(org) == (30, 400, 60)


def test_patch_without_a_row_starts_from_the_defaults_in_force(api, org, settings):
    settings.ANALYTICS_RAW_RETENTION_DAYS = 90
    settings.ANALYTICS_ROLLUP_RETENTION_DAYS = 365
    response = api.patch(URL, {"expected_interval_seconds": 300}, format="json")
    assert response.status_code == 200, response.content
    assert stored(org) == (90, 365, 300)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"raw_retention_days": 0, "rollup_retention_days": None}, "raw_retention_days", "greater than or equal to 1"),
        ({"raw_retention_days": -5, "rollup_retention_days": None}, "raw_retention_days", "greater than or equal"),
        ({"raw_retention_days": "soon", "rollup_retention_days": None}, "raw_retention_days", "valid integer"),
        ({"raw_retention_days": 1.5, "rollup_retention_days": None}, "raw_retention_days", "valid integer"),
        ({"raw_retention_days": 10**12, "rollup_retention_days": None}, "raw_retention_days", "less than or equal"),
        ({"raw_retention_days": 30, "rollup_retention_days": 7}, "rollup_retention_days", "at least"),
        ({"raw_retention_days": None, "rollup_retention_days": 365}, "rollup_retention_days", "kept forever"),
        ({"raw_retention_days": 30}, "rollup_retention_days", "required"),
        (
            {"raw_retention_days": 30, "rollup_retention_days": 60, "expected_interval_seconds": 0},
            "expected_interval_seconds",
            "greater",
        ),
    ],
)
def test_bad_bodies_are_400_naming_the_field(api, org, body, field, message):
    response = api.put(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/json")
    assert message in response.json()[field][0]
    assert not AnalyticsSettings.objects.filter(organization=org).exists()


@pytest.mark.parametrize("body", [[1, 2], "30", None])
def test_a_body_that_is_not_an_object_is_400(api, body):
    response = api.put(URL, body, format="json")
    assert response.status_code == 400, response.content


def test_rollup_retention_may_equal_raw_retention(api, org):
    response = api.put(URL, {"raw_retention_days": 30, "rollup_retention_days": 30}, format="json")
    assert response.status_code == 200
    assert stored(org) == (30, 30, 60)


def test_scopes_read_for_get_write_for_changes(anonymous_api, api_client_factory, energy_reader, org):
    assert anonymous_api.get(URL).status_code == 401
    assert api_client_factory(org, ["billing:read"]).get(URL).status_code == 403
    assert energy_reader.get(URL).status_code == 200
    body = {"raw_retention_days": 30, "rollup_retention_days": None}
    assert energy_reader.put(URL, body, format="json").status_code == 403
    assert energy_reader.patch(URL, body, format="json").status_code == 403
    writer = api_client_factory(org, ["energy:write"])
    assert writer.patch(URL, {"raw_retention_days": 30}, format="json").status_code == 200


def test_each_organization_sees_and_changes_only_its_own(api, outsider_api, org, other_org):
    AnalyticsSettings.objects.create(organization=org, raw_retention_days=42, rollup_retention_days=4242)
    assert outsider_api.get(URL).json()["source"] == "defaults"
    body = {"raw_retention_days": 1, "rollup_retention_days": 1}
    assert outsider_api.put(URL, body, format="json").status_code == 200
    assert stored(org) == (42, 4242, 60)
    assert stored(other_org) == (1, 1, 60)
    assert api.get(URL).json()["raw_retention_days"] == 42


def test_the_service_drives_the_hourly_retention_run(org, meter):
    from datetime import timedelta

    from django.utils import timezone

    from energy.models import Reading

    now = timezone.now()
    Reading.objects.create(meter=meter, ts=now - timedelta(days=10), total_power=1.0, received_at=now)
    Reading.objects.create(meter=meter, ts=now - timedelta(days=1), total_power=1.0, received_at=now)
    analytics_settings_update(organization=org, values={"raw_retention_days": 5, "rollup_retention_days": 5})
    assert retention_for(org.pk).raw_days == 5
    assert retention_enforce(organization=org, now=now)["raw"] == 1


def test_service_rejects_what_the_rules_forbid(org):
    with pytest.raises(AnalyticsSettingsInvalid) as error:
        analytics_settings_update(organization=org, values={"raw_retention_days": 30, "rollup_retention_days": 10})
    assert set(error.value.errors) == {"rollup_retention_days"}
    assert not AnalyticsSettings.objects.filter(organization=org).exists()


def test_the_admin_form_applies_the_same_rules(org):
    row = AnalyticsSettings(organization=org, raw_retention_days=30, rollup_retention_days=10)
    with pytest.raises(ValidationError) as error:
        row.full_clean()
    assert "rollup_retention_days" in error.value.message_dict
    AnalyticsSettings(organization=org, raw_retention_days=30, rollup_retention_days=None).full_clean()
    with pytest.raises(ValidationError):
        AnalyticsSettings(organization=org, raw_retention_days=10**9).full_clean()
