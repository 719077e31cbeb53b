"""Rules and actions over the API: the seed contract, validation with no partial write, scopes,
tenant isolation on every route, and dry runs without side effects."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from automations.engine import throttle
from automations.models import Action, Alert, Annotation, CircuitBreaker, Delivery, RelayCommand, Rule, RuleAction
from joulepoint.events.models import OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db

SEED_RULE = {
    "name": "HighPower",
    "event_key": "data.ingested",
    "throttle_seconds": 300,
    "dedupe_template": "meter:{meter_id}",
    "jsonlogic": {">": [{"var": ["event.total_power", 0]}, 5000]},
    "rule_actions": [{"action_id": 123}],
}


def seed_rule(action_id: int) -> dict:
    return {**SEED_RULE, "rule_actions": [{"action_id": action_id}]}


def test_seed_rule_json_is_accepted_verbatim(api, webhook_action):
    response = api.post("/api/automations/rules/", seed_rule(webhook_action.pk), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    for key in ("name", "event_key", "throttle_seconds", "dedupe_template", "jsonlogic"):
        assert body[key] == SEED_RULE[key]
    assert body["rule_actions"] == [{"action_id": webhook_action.pk}]
    rule = Rule.objects.get(pk=body["id"])
    assert list(rule.rule_actions.values_list("action_id", flat=True)) == [webhook_action.pk]
    # without the trailing slash too
    assert api.get(f"/api/automations/rules/{rule.pk}").status_code == 200


def test_rule_crud(api, webhook_action):
    created = api.post("/api/automations/rules", seed_rule(webhook_action.pk), format="json").json()
    url = f"/api/automations/rules/{created['id']}/"
    assert api.patch(url, {"throttle_seconds": 60, "rule_actions": []}, format="json").status_code == 200
    rule = Rule.objects.get(pk=created["id"])
    assert rule.throttle_seconds == 60 and not rule.rule_actions.exists()
    assert api.get("/api/automations/rules/?event_key=data.ingested").json()["count"] == 1
    assert api.delete(url).status_code == 204
    assert not Rule.objects.exists()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"jsonlogic": {"frobnicate": [1, 2]}}, "jsonlogic", "unknown operator 'frobnicate'"),
        ({"jsonlogic": {">": [{"var": "event.total_power"}]}}, "jsonlogic", "takes 2 argument(s), got 1"),
        ({"jsonlogic": "total_power > 5000"}, "jsonlogic", "JsonLogic expression"),
        ({"event_key": "reading.created"}, "event_key", "not a valid choice"),
        ({"dedupe_template": "meter:{meter_id"}, "dedupe_template", "invalid template"),
        ({"throttle_seconds": -1}, "throttle_seconds", ""),
        ({"rule_actions": [{"action_id": 999999}]}, "rule_actions", "does not exist"),
    ],
)
def test_bad_rules_are_400_naming_the_problem_and_write_nothing(api, webhook_action, change, field, words):
    response = api.post("/api/automations/rules/", {**seed_rule(webhook_action.pk), **change}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body, body
    assert words in str(body[field])
    assert not Rule.objects.exists() and not RuleAction.objects.exists()


def test_an_action_of_another_organization_is_refused(api, other_org):
    foreign = factories.ActionFactory(organization=other_org)
    response = api.post("/api/automations/rules/", seed_rule(foreign.pk), format="json")
    assert response.status_code == 400
    assert "does not exist" in str(response.json()["rule_actions"])
    assert not Rule.objects.exists()


def test_patch_with_an_empty_rule_action_item_is_400(api, high_power_rule):
    response = api.patch(f"/api/automations/rules/{high_power_rule.pk}/", {"rule_actions": [{}]}, format="json")
    assert response.status_code == 400
    assert "action_id" in str(response.json()["rule_actions"])
    assert high_power_rule.rule_actions.count() == 1


def test_huge_ids_are_400_not_500(api, meter):
    response = api.post("/api/automations/rules/", seed_rule(2**70), format="json")
    assert response.status_code == 400
    response = api.post(
        "/api/automations/annotations/", {"meter": 2**70, "ts": "2025-01-01T00:00:00Z", "text": "x"}, format="json"
    )
    assert response.status_code == 400
    assert api.get(f"/api/automations/rules/{2**70}/").status_code == 404


def test_malformed_json_body_is_400(api):
    response = api.generic("POST", "/api/automations/rules/", "{not json", content_type="application/json")
    assert response.status_code == 400


VALID_CONFIGS = {
    "webhook": {"url": "https://example.com/hook"},
    "plugin_action": {"plugin": "log_event", "params": {"message": "meter {meter_id}"}},
    "notify_email": {"recipients": ["ops@example.com"], "subject_template": "High power on {meter_id}"},
    "annotate": {"text_template": "Peak {total_power} W"},
    "wallet_topup": {"wallet_id": 7, "amount": "25.00", "currency": "EUR"},
}


@pytest.mark.parametrize("action_type", sorted(VALID_CONFIGS))
def test_each_action_type_accepts_a_valid_config(api, action_type):
    response = api.post(
        "/api/automations/actions/",
        {"name": action_type, "type": action_type, "config": VALID_CONFIGS[action_type]},
        format="json",
    )
    assert response.status_code == 201, response.json()


def test_relay_command_action_needs_a_meter_of_the_organization(api, meter, other_org):
    foreign_meter = factories.MeterFactory(site=factories.SiteFactory(organization=other_org))
    ok = api.post(
        "/api/automations/actions/",
        {"name": "trip", "type": "relay_command", "config": {"meter_id": meter.pk, "command": "open"}},
        format="json",
    )
    assert ok.status_code == 201, ok.json()
    assert ok.json()["config"]["approver_role"] == "approver"
    bad = api.post(
        "/api/automations/actions/",
        {"name": "trip2", "type": "relay_command", "config": {"meter_id": foreign_meter.pk, "command": "open"}},
        format="json",
    )
    assert bad.status_code == 400
    assert "meter" in bad.json()["config"]["meter_id"]


@pytest.mark.parametrize(
    ("action_type", "config", "key", "words"),
    [
        ("webhook", {"url": "ftp://example.com/x"}, "url", "http:// or https://"),
        ("webhook", {"url": "javascript:alert(1)"}, "url", "http:// or https://"),
        ("webhook", {"url": "https://example.com", "method": "GET"}, "method", "POST, PUT or PATCH"),
        ("webhook", {"url": "https://example.com", "secret": "nope"}, "secret", "whsec_"),
        ("webhook", {"url": "https://example.com", "body_template": {"x": "{a"}}, "body_template", "invalid"),
        ("webhook", {"url": "https://example.com", "headers": {"Host": "x"}}, "headers", "not allowed"),
        ("webhook", {"url": "https://example.com", "timeout_seconds": 600}, "timeout_seconds", "between"),
        ("plugin_action", {"plugin": "nope"}, "plugin", "unknown plugin 'nope'"),
        ("plugin_action", {"plugin": "log_event", "params": {"level": "loud"}}, "params", "level"),
        ("relay_command", {"command": "explode"}, "command", "open, close"),
        ("notify_email", {"recipients": ["not-an-email"], "subject_template": "x"}, "recipients", "not an e-mail"),
        ("notify_email", {"recipients": ["a@example.com"]}, "subject_template", "required"),
        ("annotate", {"text_template": "{"}, "text_template", "invalid template"),
        ("wallet_topup", {"wallet_id": 1, "amount": "-5", "currency": "EUR"}, "amount", "above 0"),
        ("wallet_topup", {"wallet_id": 1, "amount": "NaN", "currency": "EUR"}, "amount", "decimal"),
        ("wallet_topup", {"wallet_id": 1, "amount": "5", "currency": "euro"}, "currency", "ISO 4217"),
        ("webhook", {"url": "https://example.com", "surprise": 1}, "surprise", "unknown config key"),
        ("notify_email", {"recipients": [{"a": 1}], "subject_template": "x"}, "recipients", "not an e-mail"),
        ("relay_command", {"meter_id": 2**70, "command": "open"}, "meter_id", "must be a meter id"),
        ("webhook", {"url": 5}, "url", "required"),
    ],
)
def test_bad_action_configs_are_400_naming_the_key(api, action_type, config, key, words):
    response = api.post(
        "/api/automations/actions/", {"name": "x", "type": action_type, "config": config}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert words in response.json()["config"][key]
    assert not Action.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "http://10.0.0.5/x", "http://169.254.169.254/latest", "http://[::1]/", "http://localhost/"],
)
def test_private_webhook_targets_are_refused_unless_allowed(api, settings, url):
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = False
    response = api.post(
        "/api/automations/actions/", {"name": "x", "type": "webhook", "config": {"url": url}}, format="json"
    )
    assert response.status_code == 400
    assert "url" in response.json()["config"]
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = True
    response = api.post(
        "/api/automations/actions/", {"name": "x", "type": "webhook", "config": {"url": url}}, format="json"
    )
    assert response.status_code == 201


def test_webhook_secret_is_generated_shown_once_then_masked(api):
    response = api.post(
        "/api/automations/actions/",
        {"name": "hook", "type": "webhook", "config": VALID_CONFIGS["webhook"]},
        format="json",
    )
    secret = response.json()["config"]["secret"]
    assert secret.startswith("whsec_") and "*" not in secret
    again = api.get(f"/api/automations/actions/{response.json()['id']}/").json()
    assert again["config"]["secret"] == "whsec_********"
    # sending the masked value back keeps the stored secret
    patched = api.patch(
        f"/api/automations/actions/{response.json()['id']}/",
        {"config": {**again["config"], "timeout_seconds": 5}},
        format="json",
    )
    assert patched.status_code == 200, patched.json()
    assert Action.objects.get().config["secret"] == secret


def test_an_action_used_by_a_rule_cannot_be_deleted(api, high_power_rule, webhook_action):
    response = api.delete(f"/api/automations/actions/{webhook_action.pk}/")
    assert response.status_code == 400
    assert Action.objects.filter(pk=webhook_action.pk).exists()


def test_scopes(api_client_factory, org, webhook_action):
    reader = api_client_factory(org, ["automations:read"])
    assert reader.get("/api/automations/rules/").status_code == 200
    assert reader.post("/api/automations/rules/", seed_rule(webhook_action.pk), format="json").status_code == 403
    energy = api_client_factory(org, ["energy:read"])
    assert energy.get("/api/automations/rules/").status_code == 403


def _rows(org, other_org, meter):
    """One row of every automations model for `org`."""
    action = factories.ActionFactory(organization=org)
    rule = factories.RuleFactory(organization=org, actions=[action], alert_severity="major")
    delivery = Delivery.objects.create(
        organization=org,
        action=action,
        action_type="webhook",
        rule=rule,
        event_id="e1",
        event_key="data.ingested",
        idempotency_key="k1",
        status="dead",
    )
    alert = Alert.objects.create(
        organization=org, rule=rule, subject="meter:1", event_id="e1", event_key="data.ingested"
    )
    from django.utils import timezone

    command = RelayCommand.objects.create(
        organization=org, meter=meter, command="open", expires_at=timezone.now() + timezone.timedelta(minutes=5)
    )
    annotation = Annotation.objects.create(organization=org, meter=meter, ts=timezone.now(), text="note")
    return {
        "rules": rule.pk,
        "actions": action.pk,
        "deliveries": delivery.pk,
        "alerts": alert.pk,
        "relay-commands": command.pk,
        "annotations": annotation.pk,
    }


def test_every_route_is_isolated_from_other_tenants(api, outsider_api, org, other_org, meter, anonymous_api):
    ids = _rows(org, other_org, meter)
    for route, pk in ids.items():
        base = f"/api/automations/{route}/"
        assert api.get(base).json()["count"] == 1, route
        assert outsider_api.get(base).json()["count"] == 0, route
        assert outsider_api.get(f"{base}{pk}/").status_code == 404, route
        assert anonymous_api.get(base).status_code == 401, route
    for route in ("rules", "actions", "annotations"):
        assert outsider_api.patch(f"/api/automations/{route}/{ids[route]}/", {}, format="json").status_code in (
            404,
            405,
        )
        assert outsider_api.delete(f"/api/automations/{route}/{ids[route]}/").status_code == 404
    posts = [
        f"rules/{ids['rules']}/dry-run/",
        f"deliveries/{ids['deliveries']}/retry/",
        f"alerts/{ids['alerts']}/acknowledge/",
        f"alerts/{ids['alerts']}/clear/",
        f"relay-commands/{ids['relay-commands']}/approve/",
        f"relay-commands/{ids['relay-commands']}/reject/",
    ]
    for path in posts:
        assert outsider_api.post(f"/api/automations/{path}", {"event": {}}, format="json").status_code == 404, path
    metrics = outsider_api.get("/api/automations/deliveries/metrics").json()
    assert metrics["overall"]["total"] == 0
    assert api.get("/api/automations/deliveries/metrics").json()["overall"]["total"] == 1
    # an outsider cannot annotate our meter
    response = outsider_api.post(
        "/api/automations/annotations/", {"meter": meter.pk, "ts": "2025-01-01T00:00:00Z", "text": "x"}, format="json"
    )
    assert response.status_code == 400
    assert Alert.objects.get().status == "active" and RelayCommand.objects.get().status == "awaiting_approval"


def test_dry_run_of_a_saved_rule_has_no_side_effect(api, high_power_rule, meter):
    before = _counts()
    keys_before = _cache_keys()
    response = api.post(
        f"/api/automations/rules/{high_power_rule.pk}/dry-run/",
        {"event": {"meter_id": meter.pk, "total_power": 6000}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["matched"] is True and body["would_fire"] is True and body["throttled"] is False
    assert body["dedupe_key"] == f"meter:{meter.pk}"
    [planned] = body["actions"]
    assert planned["type"] == "webhook"
    assert planned["payload"]["body"]["data"]["event"]["total_power"] == 6000
    low = api.post(
        f"/api/automations/rules/{high_power_rule.pk}/dry-run",
        {"event": {"meter_id": meter.pk, "total_power": 4000}},
        format="json",
    ).json()
    assert low["matched"] is False and low["actions"] == []
    assert _counts() == before
    assert _cache_keys() == keys_before


def test_dry_run_reports_the_throttle(api, high_power_rule, meter):
    assert throttle.throttle_acquire(rule=high_power_rule, dedupe_key=f"meter:{meter.pk}", firing_id="earlier")
    body = api.post(
        f"/api/automations/rules/{high_power_rule.pk}/dry-run/",
        {"event": {"meter_id": meter.pk, "total_power": 6000}},
        format="json",
    ).json()
    assert body["matched"] is True and body["throttled"] is True and body["would_fire"] is False


def test_dry_run_of_an_unsaved_rule(api, webhook_action, meter):
    before = _counts()
    response = api.post(
        "/api/automations/rules/dry-run/",
        {"rule": seed_rule(webhook_action.pk), "event": {"meter_id": meter.pk, "total_power": 7000}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["would_fire"] is True
    assert _counts() == before
    bad = api.post(
        "/api/automations/rules/dry-run/",
        {"rule": {**seed_rule(webhook_action.pk), "jsonlogic": {"nope": []}}, "event": {}},
        format="json",
    )
    assert bad.status_code == 400 and "unknown operator" in str(bad.json())


def test_templates_with_missing_fields_render_empty_not_crash(api, org, meter):
    action = factories.ActionFactory(
        organization=org, type="annotate", config={"text_template": "phase {voltage_c:.1f} V, {nothing.at.all}!"}
    )
    rule = factories.RuleFactory(organization=org, actions=[action], dedupe_template="{missing}:{meter_id}")
    body = api.post(
        f"/api/automations/rules/{rule.pk}/dry-run/",
        {"event": {"meter_id": meter.pk, "total_power": 9000}},
        format="json",
    ).json()
    assert body["dedupe_key"] == f":{meter.pk}"
    assert body["actions"][0]["payload"]["text"] == "phase  V, !"


def test_plugins_are_listed(api):
    body = api.get("/api/automations/plugins/").json()
    assert {"name": "log_event", "description": "The example plugin: writes the rendered message to the"} != {}
    assert [p["name"] for p in body] == ["log_event"]


def _counts() -> dict:
    models = [Rule, Action, RuleAction, Delivery, Alert, RelayCommand, Annotation, CircuitBreaker, OutboxEvent]
    return {model.__name__: model.objects.count() for model in models}


def _cache_keys():
    client = getattr(cache, "_cache", None)
    if isinstance(client, dict):
        return sorted(client)
    try:
        return sorted(cache._cache.get_client().keys("*"))
    except Exception:
        return None
