"""The admin as a facility manager uses it: only their organization's rows, in lists, forms and
filters; sites, meters and API access credentials created through the forms land in their
organization; a viewer may look but not change."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.hashers import check_password
from django.test import Client
from django.utils import timezone

from energy.models import Meter, MeterGroup, Reading, Site
from joulepoint.tenancy.models import Application, Membership
from tests import factories
from tests.factories import ActionFactory, RuleFactory

pytestmark = pytest.mark.django_db


def reading(meter, hour: int, power: float) -> Reading:
    return Reading.objects.create(
        meter=meter,
        ts=datetime(2025, 10, 16, hour, tzinfo=UTC),
        total_power=power,
        received_at=timezone.now(),
    )


@pytest.fixture
def manager_client(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def viewer_client(member) -> Client:
    client = Client()
    client.force_login(member)
    return client


@pytest.fixture
def rows(org, other_org):
    """Each organization has a site, a meter, a group and a reading with recognisable names."""
    mine_site = factories.SiteFactory(organization=org, name="Acme Depot")
    theirs_site = factories.SiteFactory(organization=other_org, name="Outsider Plant")
    mine_meter = factories.MeterFactory(site=mine_site, name="Acme Main Meter", serial="ACME-1")
    theirs_meter = factories.MeterFactory(site=theirs_site, name="Outsider Main Meter", serial="OUT-1")
    mine_group = factories.MeterGroupFactory(organization=org, name="Acme Feeders", meters=[mine_meter])
    theirs_group = factories.MeterGroupFactory(organization=other_org, name="Outsider Feeders", meters=[theirs_meter])
    return {
        "mine": {"site": mine_site, "meter": mine_meter, "group": mine_group, "reading": reading(mine_meter, 10, 1111)},
        "theirs": {
            "site": theirs_site,
            "meter": theirs_meter,
            "group": theirs_group,
            "reading": reading(theirs_meter, 10, 2222),
        },
    }


def changelist_names(client: Client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, url
    return [str(obj) for obj in response.context["cl"].result_list]


def test_manager_without_django_permissions_reaches_the_admin(owner, manager_client):
    assert not owner.is_superuser
    assert not owner.user_permissions.exists()
    response = manager_client.get("/admin/")
    assert response.status_code == 200
    models = {model["object_name"] for app in response.context["app_list"] for model in app["models"]}
    assert {"Site", "Meter", "MeterGroup", "Reading", "ApiAccess"} <= models


def test_staff_user_without_membership_sees_no_tenant_models(rows):
    stranger = factories.UserFactory()
    client = Client()
    client.force_login(stranger)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert response.context["app_list"] == []
    assert client.get("/admin/energy/site/").status_code == 403


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("/admin/energy/site/", "site"),
        ("/admin/energy/meter/", "meter"),
        ("/admin/energy/metergroup/", "group"),
        ("/admin/energy/reading/", "reading"),
    ],
)
def test_changelists_show_only_the_managers_organization(manager_client, rows, url, kind):
    assert changelist_names(manager_client, url) == [str(rows["mine"][kind])]


def test_reading_changelist_shows_own_values_only(manager_client, rows):
    content = manager_client.get("/admin/energy/reading/").content.decode()
    assert "1111" in content
    assert "2222" not in content


def test_superuser_sees_every_organization(rows):
    admin_user = factories.UserFactory(is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    assert sorted(changelist_names(client, "/admin/energy/site/")) == ["Acme Depot", "Outsider Plant"]


@pytest.mark.parametrize("kind", ["site", "meter", "group", "reading"])
def test_other_organizations_object_pages_are_not_reachable(manager_client, rows, kind):
    obj = rows["theirs"][kind]
    meta = obj._meta
    for suffix in ["change/", "delete/", "history/"]:
        response = manager_client.get(f"/admin/{meta.app_label}/{meta.model_name}/{obj.pk}/{suffix}")
        # Django's admin answers a missing object with a redirect to the index (or 404);
        # pages the user may not use at all answer 403 before looking the object up.
        assert response.status_code in {302, 403, 404}, (kind, suffix)
        if response.status_code == 302:
            assert response["Location"] == "/admin/"
        assert str(obj) not in response.content.decode()


def test_other_organizations_object_cannot_be_changed_by_post(manager_client, rows):
    site = rows["theirs"]["site"]
    response = manager_client.post(
        f"/admin/energy/site/{site.pk}/change/",
        {"organization": site.organization_id, "name": "Hijacked", "timezone": "UTC"},
    )
    assert response.status_code in {302, 403, 404}
    site.refresh_from_db()
    assert site.name == "Outsider Plant"


def test_bulk_delete_action_ignores_other_organizations_rows(manager_client, rows, org):
    theirs, mine = rows["theirs"]["site"], factories.SiteFactory(organization=org, name="Empty Yard")
    manager_client.post(
        "/admin/energy/site/",
        {"action": "delete_selected", "_selected_action": [theirs.pk, mine.pk], "post": "yes"},
    )
    assert Site.objects.filter(pk=theirs.pk).exists()
    assert not Site.objects.filter(pk=mine.pk).exists()


def test_meter_form_site_choices_list_only_own_sites(manager_client, rows):
    response = manager_client.get("/admin/energy/meter/add/")
    assert response.status_code == 200
    choices = list(response.context["adminform"].form.fields["site"].queryset)
    assert choices == [rows["mine"]["site"]]
    assert "Outsider Plant" not in response.content.decode()


def test_group_form_meter_choices_list_only_own_meters(manager_client, rows):
    response = manager_client.get("/admin/energy/metergroup/add/")
    assert list(response.context["adminform"].form.fields["meters"].queryset) == [rows["mine"]["meter"]]
    assert list(response.context["adminform"].form.fields["organization"].queryset) == [
        rows["mine"]["site"].organization
    ]


def test_list_filters_do_not_reveal_other_organizations(manager_client, rows):
    for url in [
        "/admin/energy/site/",
        "/admin/energy/meter/",
        "/admin/energy/reading/",
        "/admin/integrations/apiaccess/",
    ]:
        content = manager_client.get(url).content.decode()
        assert "Outsider" not in content, url


def test_manager_creates_a_site_and_a_meter_through_the_forms(manager_client, org):
    response = manager_client.post(
        "/admin/energy/site/add/",
        {"organization": org.pk, "name": "New Warehouse", "timezone": "Europe/Berlin", "address": ""},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    site = Site.objects.get(name="New Warehouse")
    assert site.organization == org

    response = manager_client.post(
        "/admin/energy/meter/add/",
        {
            "site": site.pk,
            "name": "Warehouse Grid",
            "serial": "WH-0001",
            "kind": "grid",
            "nominal_voltage": "230",
            "phases": "3",
            "is_active": "on",
        },
        follow=True,
    )
    assert response.status_code == 200
    meter = Meter.objects.get(serial="WH-0001")
    assert meter.organization == org
    assert meter.site == site
    # The device needs its key and secret: the admin shows them once, on creation.
    content = response.content.decode()
    assert str(meter.device_key) in content
    assert meter.device_secret in content
    assert meter.device_secret not in manager_client.get(f"/admin/energy/meter/{meter.pk}/change/").content.decode()


def test_meter_form_refuses_another_organizations_site(manager_client, rows):
    response = manager_client.post(
        "/admin/energy/meter/add/",
        {
            "site": rows["theirs"]["site"].pk,
            "name": "Sneaky",
            "serial": "SNEAK-1",
            "kind": "load",
            "nominal_voltage": "230",
            "phases": "3",
        },
    )
    assert response.status_code == 200
    assert "site" in response.context["adminform"].form.errors
    assert not Meter.objects.filter(serial="SNEAK-1").exists()


def test_duplicate_meter_serial_is_a_form_error_not_a_crash(manager_client, rows):
    response = manager_client.post(
        "/admin/energy/meter/add/",
        {
            "site": rows["mine"]["site"].pk,
            "name": "Second",
            "serial": "ACME-1",
            "kind": "load",
            "nominal_voltage": "230",
            "phases": "3",
        },
    )
    assert response.status_code == 200
    assert "serial" in response.context["adminform"].form.errors
    assert Meter.objects.filter(serial="ACME-1").count() == 1


def test_site_form_refuses_another_organization(manager_client, other_org):
    response = manager_client.post(
        "/admin/energy/site/add/", {"organization": other_org.pk, "name": "Planted", "timezone": "UTC"}
    )
    assert response.status_code == 200
    assert "organization" in response.context["adminform"].form.errors
    assert not Site.objects.filter(name="Planted").exists()


def test_admin_index_has_integrations_api_access(manager_client):
    response = manager_client.get("/admin/")
    integrations = [app for app in response.context["app_list"] if app["app_label"] == "integrations"]
    assert len(integrations) == 1
    assert integrations[0]["name"] == "Integrations"
    assert [model["name"] for model in integrations[0]["models"]] == ["API access"]
    assert integrations[0]["models"][0]["add_url"] == "/admin/integrations/apiaccess/add/"


def test_api_access_created_in_admin_is_bound_to_the_org_and_shows_secret_once(manager_client, org, owner):
    response = manager_client.post(
        "/admin/integrations/apiaccess/add/",
        {
            "name": "SCADA bridge",
            "organization": org.pk,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_CLIENT_CREDENTIALS,
            "redirect_uris": "",
            "scopes": ["energy:read", "billing:read"],
        },
        follow=True,
    )
    assert response.status_code == 200
    application = Application.objects.get(name="SCADA bridge")
    assert application.organization == org
    assert set(application.scope_list) == {"energy:read", "billing:read"}
    assert application.user == owner

    content = response.content.decode()
    match = re.search(rf"{application.client_id}\b.*?: ([A-Za-z0-9]{{20,}})", content)
    assert match, "the client secret is shown after creation"
    secret = match.group(1)
    assert secret != application.client_secret  # stored hashed
    assert check_password(secret, application.client_secret)

    # Shown once: neither the change page nor the list shows it again.
    assert secret not in manager_client.get(f"/admin/integrations/apiaccess/{application.pk}/change/").content.decode()
    assert secret not in manager_client.get("/admin/integrations/apiaccess/").content.decode()

    # The secret works, and only for the scopes chosen in the form.
    basic = base64.b64encode(f"{application.client_id}:{secret}".encode()).decode()
    token = Client().post("/o/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert token.status_code == 200, token.content
    assert set(token.json()["scope"].split()) == {"energy:read", "billing:read"}


def test_api_access_scopes_are_required_and_from_the_list(manager_client, org):
    response = manager_client.post(
        "/admin/integrations/apiaccess/add/",
        {
            "name": "Bad",
            "organization": org.pk,
            "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_CLIENT_CREDENTIALS,
            "scopes": ["energy:read", "root"],
        },
    )
    assert response.status_code == 200
    assert "scopes" in response.context["adminform"].form.errors
    assert not Application.objects.filter(name="Bad").exists()


def test_api_access_list_shows_only_own_credentials(manager_client, org, other_org):
    from joulepoint.tenancy.services import api_credential_create

    api_credential_create(organization=org, name="Acme BMS", scopes=["energy:read"])
    api_credential_create(organization=other_org, name="Outsider BMS", scopes=["energy:read"])
    names = changelist_names(manager_client, "/admin/integrations/apiaccess/")
    assert len(names) == 1
    assert names[0].startswith("Acme BMS")


def test_viewer_can_view_but_not_change(viewer_client, rows, org):
    site = rows["mine"]["site"]
    assert changelist_names(viewer_client, "/admin/energy/site/") == ["Acme Depot"]

    page = viewer_client.get(f"/admin/energy/site/{site.pk}/change/")
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert "Acme Depot" in page.content.decode()

    response = viewer_client.post(
        f"/admin/energy/site/{site.pk}/change/", {"organization": org.pk, "name": "Renamed", "timezone": "UTC"}
    )
    assert response.status_code == 403
    site.refresh_from_db()
    assert site.name == "Acme Depot"

    assert viewer_client.get("/admin/energy/site/add/").status_code == 403
    assert viewer_client.get("/admin/integrations/apiaccess/add/").status_code == 403
    assert viewer_client.post(f"/admin/energy/site/{site.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Site.objects.filter(pk=site.pk).exists()


def test_viewer_sees_api_access_read_only(viewer_client, org):
    from joulepoint.tenancy.services import api_credential_create

    credential = api_credential_create(organization=org, name="Acme BMS", scopes=["energy:read", "ml:read"])
    page = viewer_client.get(f"/admin/integrations/apiaccess/{credential.application.pk}/change/")
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    content = page.content.decode()
    assert credential.application.client_id in content
    assert "ml:read" in content


def test_operator_in_one_org_and_viewer_in_another(org, other_org, rows):
    user = factories.UserFactory()
    factories.MembershipFactory(user=user, organization=org, role=Membership.Role.OPERATOR)
    factories.MembershipFactory(user=user, organization=other_org, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)

    assert sorted(changelist_names(client, "/admin/energy/site/")) == ["Acme Depot", "Outsider Plant"]
    mine, theirs = rows["mine"]["site"], rows["theirs"]["site"]
    assert client.get(f"/admin/energy/site/{mine.pk}/change/").context["has_change_permission"] is True
    assert client.get(f"/admin/energy/site/{theirs.pk}/change/").context["has_change_permission"] is False
    # New rows may only go to the organization where the user may write.
    form = client.get("/admin/energy/meter/add/").context["adminform"].form
    assert list(form.fields["site"].queryset) == [mine]


@pytest.fixture
def two_org_admin_client(org, other_org) -> Client:
    """A facility manager who administers two organizations."""
    user = factories.UserFactory(is_staff=True)
    factories.MembershipFactory(user=user, organization=org, role=Membership.Role.ADMIN)
    factories.MembershipFactory(user=user, organization=other_org, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def test_a_member_of_two_organizations_cannot_link_their_rows(two_org_admin_client, org, rows):
    theirs_meter = rows["theirs"]["meter"]
    response = two_org_admin_client.post(
        "/admin/energy/metergroup/add/",
        {
            "organization": org.pk,
            "name": "Mixed",
            "description": "",
            "meters": [rows["mine"]["meter"].pk, theirs_meter.pk],
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["meters"] == ["Belongs to another organization than this row."]
    assert not MeterGroup.objects.filter(name="Mixed").exists()

    # The same group with its own organization's meters only is fine.
    response = two_org_admin_client.post(
        "/admin/energy/metergroup/add/",
        {"organization": org.pk, "name": "Mixed", "description": "", "meters": [rows["mine"]["meter"].pk]},
    )
    assert response.status_code == 302
    assert list(MeterGroup.objects.get(name="Mixed").meters.all()) == [rows["mine"]["meter"]]


def test_a_rule_cannot_use_another_organizations_action_in_the_admin(two_org_admin_client, org, other_org):
    theirs = ActionFactory(organization=other_org, name="their webhook")
    rule = RuleFactory(organization=org, name="mine")
    prefix = "rule_actions"
    form = two_org_admin_client.get(f"/admin/automations/rule/{rule.pk}/change/").context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-0-action": theirs.pk,
            f"{prefix}-0-position": "0",
        }
    )
    response = two_org_admin_client.post(f"/admin/automations/rule/{rule.pk}/change/", data)
    assert response.status_code == 200, sorted(data)
    [formset] = response.context["inline_admin_formsets"]
    assert formset.formset.forms[0].errors["action"] == ["Belongs to another organization than this row."]
    assert not rule.rule_actions.exists()
