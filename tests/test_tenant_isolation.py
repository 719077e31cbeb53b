"""Every API route, walked as a second tenant with the first tenant's ids: 404 or no rows, never a leak.

The routes come from the URL resolver, not a hand-kept list, so a route added later is walked too.
A route this walk cannot drive (an unknown URL parameter, a model with no sample row) fails loudly
and asks to be taught here, rather than being skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from automations.models import Action, Alert, Annotation, Delivery, RelayCommand, Rule
from billing.models import Account, Statement, Tariff, TariffVersion, Wallet, WalletTransaction
from billing.services import statement_generate, wallet_move
from energy.analytics.models import AnalyticsSettings
from energy.api.analytics import AnalyticsView
from energy.api.authentication import DeviceKeyAuthentication
from energy.load.models import (
    Allocation,
    Charger,
    ChargingSession,
    DemandResponseEvent,
    IdToken,
    LoadSchedule,
    Setpoint,
    SiteConstraint,
)
from energy.models import DeviceCommand, Gateway, Meter, MeterGroup, Reading, Site
from energy.power_quality.models import PQConfig, PQEvent, ProtectionEvent
from energy.topology.models import Edge, Node, TopologySettings
from joulepoint.audit.models import AuditEntry
from mlops.api.trainer import TrainerTokenAuthentication
from mlops.models import (
    Assignment,
    Dataset,
    DatasetVersion,
    ModelVersion,
    Promotion,
    RegisteredModel,
    TrainingJob,
)
from tests import factories
from tests.routes import SKIPPED_ROUTE_NAMES, api_routes, route_methods

pytestmark = pytest.mark.django_db

MARKER = "ACME-PRIVATE"
T0 = datetime(2025, 10, 16, 10, tzinfo=UTC)


ROUTES = api_routes()


def route_model(pattern: URLPattern):
    view_class = getattr(pattern.callback, "cls", None)
    queryset = getattr(view_class, "queryset", None)
    # Views that are not querysets over a model (device routes) name it in `model`.
    return queryset.model if queryset is not None else getattr(view_class, "model", None)


def is_analytics_subject_route(pattern: URLPattern) -> bool:
    """Analytics routes take their subject as a query parameter (meter=, group=) and answer 400
    without one. (The analytics settings route has no subject: it is the organization's own row.)"""
    view_class = getattr(pattern.callback, "view_class", None)
    return view_class is not None and issubclass(view_class, AnalyticsView)


# Routes whose subject is a site given as `?site=` (400 without one): a foreign site is a 404.
SITE_SUBJECT_ROUTES = {"topology-node-graph", "load-forecast", "load-windows"}


def is_device_route(pattern: URLPattern) -> bool:
    """Routes only devices call (X-Device-Key): walked with the outsider's meter key, not a token."""
    view_class = getattr(pattern.callback, "cls", None)
    return DeviceKeyAuthentication in getattr(view_class, "authentication_classes", ())


def _rows(org, marker: str) -> dict:
    site = factories.SiteFactory(organization=org, name=f"{marker} site")
    meter = factories.MeterFactory(site=site, name=f"{marker} meter", serial=f"{marker}-SN")
    gateway = factories.GatewayFactory(site=site, name=f"{marker} gateway")
    group = factories.MeterGroupFactory(organization=org, name=f"{marker} group", meters=[meter])
    reading = Reading.objects.create(meter=meter, ts=T0, total_power=4242.0, received_at=timezone.now())
    config = PQConfig.objects.create(organization=org, meter=meter, thd_pct_threshold=4.2)
    pq_event = PQEvent.objects.create(
        organization=org,
        meter=meter,
        kind="sag",
        start=T0,
        last_violation_at=T0,
        worst_value=0.5,
        unit="pu",
        threshold=0.9,
    )
    protection_event = ProtectionEvent.objects.create(
        organization=org, meter=meter, kind="trip", occurred_at=T0, details={"note": f"{marker} trip"}
    )
    command = DeviceCommand.objects.create(
        organization=org, meter=meter, name=f"{marker} command", expires_at=timezone.now() + timedelta(hours=1)
    )
    # One settings row per organization: the snapshot proves no write of the outsider reaches it.
    analytics_settings = AnalyticsSettings.objects.create(
        organization=org, raw_retention_days=42, rollup_retention_days=4242, expected_interval_seconds=42
    )
    grid = factories.NodeFactory(site=site, name=f"{marker} grid", kind="grid_connection", meter=meter)
    board = factories.NodeFactory(site=site, name=f"{marker} board", kind="switchboard")
    edge = factories.EdgeFactory(parent=grid, child=board)
    topology_settings = TopologySettings.objects.create(organization=org, site=site, stale_after_seconds=42)
    return {
        Site: site,
        Node: grid,
        Edge: edge,
        TopologySettings: topology_settings,
        Meter: meter,
        Gateway: gateway,
        MeterGroup: group,
        Reading: reading,
        PQConfig: config,
        PQEvent: pq_event,
        ProtectionEvent: protection_event,
        DeviceCommand: command,
        AnalyticsSettings: analytics_settings,
        # The audit trail recorded the site's creation (docs/audit.md); its entry names the site.
        AuditEntry: AuditEntry.objects.for_org(org).get(content_type__model="site", object_id=site.pk),
        **_automation_rows(org, marker, meter),
        **_billing_rows(org, marker, site, meter),
        **_mlops_rows(org, marker, meter),
        **_load_rows(org, marker, site, meter),
    }


def _load_rows(org, marker: str, site, meter) -> dict:
    """Load management: limits, a charger on the tenant's one meter (the walk counts meters; the
    factory does not check its kind) with an EVSE, an ID token, a session and an allocation."""
    charger = factories.ChargerFactory(meter=meter, charging_station_id=f"{marker}-CS", is_online=True)
    factories.EvseFactory(charger=charger)
    token = factories.IdTokenFactory(organization=org, id_token=f"{marker}-CARD", label=f"{marker} card")
    session = factories.ChargingSessionFactory(charger=charger, transaction_id=f"{marker}-TX", id_token=marker)
    constraint = factories.SiteConstraintFactory(site=site, grid_meter=meter, max_import_kw=42.0)
    schedule = factories.LoadScheduleFactory(site=site, name=f"{marker} schedule")
    event = factories.DemandResponseEventFactory(site=site, program=f"{marker} programme")
    allocation = Allocation.objects.create(
        organization=org, site=site, computed_at=T0, effective_limit_w=42_000.0, limit_source="constraint",
        available_w=4_200.0, warnings=[f"{marker} warning"],
    )  # fmt: skip
    setpoint = Setpoint.objects.create(
        organization=org, allocation=allocation, session=session, charger=charger, power_w=4140.0, current_a=6.0,
    )  # fmt: skip
    return {
        Charger: charger, IdToken: token, ChargingSession: session, SiteConstraint: constraint,
        LoadSchedule: schedule, DemandResponseEvent: event, Allocation: allocation, Setpoint: setpoint,
    }  # fmt: skip


def _billing_rows(org, marker: str, site, meter) -> dict:
    wallet = factories.WalletFactory(organization=org, name=f"{marker} wallet")
    tariff = factories.TariffFactory(organization=org, name=f"{marker} tariff")
    account = factories.AccountFactory(
        organization=org, site=site, tariff=tariff, name=f"{marker} account", meters=[meter], wallet=wallet
    )
    movement = wallet_move(
        organization_id=org.pk, wallet_id=wallet.pk, kind="credit", amount=Decimal("42.00"), currency="EUR",
        idempotency_key=f"{marker}-credit", reference=f"{marker} reference",
    ).transaction  # fmt: skip
    statement, _ = statement_generate(account=account, start=T0 - timedelta(days=1), end=T0)
    return {
        Tariff: tariff, TariffVersion: tariff.versions.get(), Account: account, Wallet: wallet,
        WalletTransaction: movement, Statement: statement,
    }  # fmt: skip


def _automation_rows(org, marker: str, meter) -> dict:
    action = factories.ActionFactory(organization=org, name=f"{marker} action")
    rule = factories.RuleFactory(organization=org, name=f"{marker} rule", actions=[action], alert_severity="major")
    delivery = Delivery.objects.create(
        organization=org, action=action, action_type="webhook", rule=rule, event_id=f"{marker}-event",
        event_key="data.ingested", idempotency_key=f"{marker}-key", status="dead", last_error=f"{marker} error",
    )  # fmt: skip
    alert = Alert.objects.create(
        organization=org, rule=rule, meter=meter, subject=f"{marker} subject", event_id=f"{marker}-event",
        event_key="data.ingested",
    )  # fmt: skip
    command = RelayCommand.objects.create(
        organization=org, meter=meter, command="open", reason=f"{marker} reason",
        expires_at=timezone.now() + timedelta(minutes=10),
    )  # fmt: skip
    annotation = Annotation.objects.create(organization=org, meter=meter, ts=T0, text=f"{marker} note")
    return {Action: action, Rule: rule, Delivery: delivery, Alert: alert, RelayCommand: command, Annotation: annotation}


def _mlops_rows(org, marker: str, meter) -> dict:
    dataset = factories.DatasetFactory(organization=org, name=f"{marker} dataset", meters=[meter])
    version = factories.DatasetVersionFactory(dataset=dataset, number=1, error=f"{marker} error")
    model = factories.RegisteredModelFactory(organization=org, name=f"{marker} model")
    job = factories.TrainingJobFactory(dataset_version=version, model=model, logs=f"{marker} logs")
    model_version = factories.ModelVersionFactory(model=model, job=job, created_by=f"{marker} trainer")
    assignment = factories.AssignmentFactory(model=model, meter=meter)
    promotion = Promotion.objects.create(
        organization=org, assignment=assignment, alias="production", version=model_version, reason=f"{marker} why"
    )
    return {
        Dataset: dataset,
        DatasetVersion: version,
        RegisteredModel: model,
        TrainingJob: job,
        ModelVersion: model_version,
        Assignment: assignment,
        Promotion: promotion,
    }


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    # OAuth2 client secrets are hashed on creation; the production hasher costs ~1 s per token here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def first(org):
    """The first tenant's rows, one of each tenant model the API serves, named with MARKER."""
    return _rows(org, MARKER)


@pytest.fixture
def own(other_org):
    """The outsider's own rows, so a list that answers nothing at all does not pass for isolated."""
    return _rows(other_org, "outsider")


def snapshot(rows: dict) -> dict:
    """What the first tenant would notice if an outsider changed or deleted their rows."""
    state = {}
    for model, row in rows.items():
        fresh = model.objects.filter(pk=row.pk).values().first()
        state[model.__name__] = fresh
    return state


def assert_no_leak(response, first: dict) -> None:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = body.decode()
    assert MARKER not in text, text[:500]
    for device in (first[Meter], first[Gateway]):
        assert str(device.device_key) not in text
        assert device.device_secret not in text


def detail_kwargs(pattern: URLPattern, model, rows: dict) -> dict:
    names = list(pattern.pattern.regex.groupindex)
    kwargs = {}
    for name in names:
        if name == "number" and model is Dataset:
            # /api/ml/datasets/{pk}/versions/{number}/download: the number of the dataset's version.
            kwargs[name] = rows[DatasetVersion].number
            continue
        assert name == "pk", f"{pattern.name}: teach the tenant walk which row {name!r} names"
        assert model in rows, f"{pattern.name}: add a sample {model.__name__} row to the tenant walk"
        kwargs[name] = rows[model].pk
    return kwargs


def test_the_walk_sees_the_api():
    names = {pattern.name for _route, pattern in ROUTES}
    assert {"reading-list", "reading-bulk", "site-list", "meter-detail", "meter-rotate-key"} <= names
    assert {"metergroup-detail", "gateway-rotate-key"} <= names
    assert not names & SKIPPED_ROUTE_NAMES
    assert all(name for name in names), "every API route needs a name so the walk can reverse it"


def is_trainer_route(pattern: URLPattern) -> bool:
    """External trainer doors (a job's own token, not OAuth2): another organization's token is no
    job token, so the walk expects 401 there, not 404, and no leak."""
    view_class = getattr(pattern.callback, "cls", None)
    return TrainerTokenAuthentication in getattr(view_class, "authentication_classes", ())


@pytest.mark.parametrize("route,pattern", ROUTES, ids=[route for route, _ in ROUTES])
def test_route_walked_as_another_tenant(outsider_api, first, own, route, pattern):
    if is_device_route(pattern):
        outsider_api = APIClient()
        outsider_api.credentials(HTTP_X_DEVICE_KEY=str(own[Meter].device_key))
    model = route_model(pattern)
    kwargs = detail_kwargs(pattern, model, first) if pattern.pattern.regex.groupindex else {}
    url = reverse(pattern.name, kwargs=kwargs)
    before = snapshot(first)
    counts = {m: m.objects.for_org(first[Site].organization).count() for m in first}

    for method in route_methods(pattern):
        if is_trainer_route(pattern):
            response = getattr(outsider_api, method)(url)
            assert response.status_code == 401, (method, url, response.status_code, response.content[:300])
            assert_no_leak(response, first)
        elif kwargs:
            _detail_is_404(outsider_api, url, method, first)
        elif method == "get" and is_analytics_subject_route(pattern):
            _analytics_subject_is_404(outsider_api, url, first, own)
        elif method == "get" and pattern.name in SITE_SUBJECT_ROUTES:
            _site_subject_is_404(outsider_api, url, first, own)
        elif method == "get":
            _list_has_no_foreign_rows(outsider_api, url, model, pattern, first, own)
        else:
            response = getattr(outsider_api, method)(url, _payload_naming(first), format="json")
            assert response.status_code < 500, response.content
            assert_no_leak(response, first)

    assert snapshot(first) == before, f"{route} changed the first tenant's rows"
    assert {m: m.objects.for_org(first[Site].organization).count() for m in first} == counts
    assert references_into(first, from_org=own[Site].organization) == [], f"{route} linked to foreign rows"


WRITE_METHODS = {"post", "put", "patch", "delete"}
WRITE_ROUTES = [
    (route, pattern)
    for route, pattern in ROUTES
    if not pattern.pattern.regex.groupindex and set(route_methods(pattern)) & WRITE_METHODS
]


@pytest.mark.parametrize("route,pattern", WRITE_ROUTES, ids=[route for route, _ in WRITE_ROUTES])
def test_write_route_walked_with_another_tenants_device_key(first, own, route, pattern):
    """Ingest doors take a device key on their writes even where reads take a token (readings,
    bulk, protection events): the outsider's meter and gateway name the first tenant's meter by
    id and by serial, singly and in a batch, and nothing of the first tenant changes."""
    url = reverse(pattern.name)
    before = snapshot(first)
    counts = {m: m.objects.for_org(first[Site].organization).count() for m in first}
    naming = {**_payload_naming(first), "meter_serial": first[Meter].serial}
    for device in (own[Meter], own[Gateway]):
        client = APIClient()
        client.credentials(HTTP_X_DEVICE_KEY=str(device.device_key))
        for method in sorted(set(route_methods(pattern)) & WRITE_METHODS):
            for body in (naming, [naming], {"readings": [naming]}):
                response = getattr(client, method)(url, body, format="json")
                assert response.status_code < 500, (method, url, response.content[:300])
                assert_no_leak(response, first)
    assert snapshot(first) == before, f"{route} changed the first tenant's rows"
    assert {m: m.objects.for_org(first[Site].organization).count() for m in first} == counts


def references_into(first: dict, *, from_org) -> list[str]:
    """The outsider's rows that point at one of the first tenant's rows (by foreign key or M2M)."""
    found = []
    for model in first:
        for field in model._meta.get_fields():
            if field.auto_created or not (field.many_to_one or field.many_to_many):
                continue
            if field.related_model not in first:
                continue
            target = first[field.related_model]
            if model.objects.for_org(from_org).filter(**{field.name: target}).exists():
                found.append(f"{model.__name__}.{field.name} -> {field.related_model.__name__} {target.pk}")
    return found


def _payload_naming(first: dict) -> dict:
    """A write body that points at the first tenant's rows wherever a field could."""
    return {
        "name": "hijacked",
        "serial": "hijacked",
        "site": first[Site].pk,
        "meter": first[Meter].pk,
        "meters": [first[Meter].pk],
        "meter_id": first[Meter].pk,
        "timestamp": "2025-10-16T10:00:00Z",
        "total_power": 1.0,
    }


def _detail_is_404(client, url: str, method: str, first: dict) -> None:
    for path in (url, url.rstrip("/") + "/"):
        response = getattr(client, method)(path, _payload_naming(first), format="json")
        assert response.status_code == 404, (method, path, response.status_code, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        assert_no_leak(response, first)


def _analytics_subject_is_404(client, url: str, first: dict, own: dict) -> None:
    window = {"start": "2025-10-16T00:00:00Z", "end": "2025-10-17T00:00:00Z"}
    for name, model in (("meter", Meter), ("group", MeterGroup)):
        response = client.get(url, {name: first[model].pk, **window})
        assert response.status_code == 404, (url, name, response.status_code, response.content[:300])
        assert_no_leak(response, first)
        # The outsider's own subject answers, so the 404 above means something.
        mine = client.get(url, {name: own[model].pk, **window})
        assert mine.status_code in (200, 400), (url, name, mine.status_code, mine.content[:300])
        assert_no_leak(mine, first)


def _site_subject_is_404(client, url: str, first: dict, own: dict) -> None:
    response = client.get(url, {"site": first[Site].pk})
    assert response.status_code == 404, (url, response.status_code, response.content[:300])
    assert_no_leak(response, first)
    # The outsider's own site answers, so the 404 above means something.
    mine = client.get(url, {"site": own[Site].pk})
    assert_no_leak(mine, first)
    if "load/forecast" in url:
        # The outsider's site has no history to forecast from: a 400 about that, not about the site.
        assert mine.status_code in (200, 400), (url, mine.status_code, mine.content[:300])
        assert "site" not in mine.json().get("errors", {}) and mine.json().get("param") != "site"
        return
    assert mine.status_code == 200, (url, mine.status_code, mine.content[:300])
    if "load/windows" in url:
        listed = [(window["kind"], window["id"]) for window in mine.json()["windows"]]
        assert ("demand_response", own[DemandResponseEvent].pk) in listed
        return
    assert own[Node].pk in [node["id"] for node in mine.json()["nodes"]]


def _list_has_no_foreign_rows(client, url: str, model, pattern: URLPattern, first: dict, own: dict) -> None:
    response = client.get(url)
    assert response.status_code == 200, response.content
    assert_no_leak(response, first)
    body = response.json()
    rows = body["results"] if isinstance(body, dict) and "results" in body else body
    if isinstance(rows, dict):
        return  # a summary (e.g. deliveries/metrics), not a list of rows: the leak check above is it
    if model is not None:
        # Per-meter views (PQ configuration, breaker state) key their rows by meter_id, per-site
        # ones (topology settings) by site_id.
        listed = {row["id"] if "id" in row else row.get("meter_id", row.get("site_id")) for row in rows}
        assert first[model].pk not in listed
        assert own[model].pk in listed, "the outsider's own row is missing: the walk would prove nothing"

    # Filtering by the first tenant's ids must not open a door either.
    filterset = getattr(getattr(pattern.callback, "cls", None), "filterset_class", None)
    if filterset is not None:
        names = {"site": first[Site].pk, "meter": first[Meter].pk, "group": first[MeterGroup].pk}
        params = {name: value for name, value in names.items() if name in filterset.base_filters}
        for name, value in params.items():
            filtered = client.get(url, {name: value})
            assert filtered.status_code in (200, 400), filtered.content
            assert_no_leak(filtered, first)
            if filtered.status_code == 200:
                assert filtered.json()["results"] == [], (name, filtered.json())


def test_outsider_reading_the_first_tenants_meter_gets_an_empty_list(outsider_api, first, own):
    response = outsider_api.get("/api/energy/energy-data/", {"meter": first[Meter].pk})
    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []
    # The same query for their own meter does answer, so the empty list above means something.
    assert outsider_api.get("/api/energy/energy-data/", {"meter": own[Meter].pk}).json()["count"] == 1


def test_the_first_tenant_sees_its_own_rows(api, first):
    # The other side of the coin: the rows the outsider could not see are there for their owner.
    for path, model in [
        ("/api/energy/sites/", Site),
        ("/api/energy/meters/", Meter),
        ("/api/energy/groups/", MeterGroup),
        ("/api/energy/gateways/", Gateway),
        ("/api/energy/energy-data/", Reading),
    ]:
        assert [row["id"] for row in api.get(path).json()["results"]] == [first[model].pk]
