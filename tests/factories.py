"""Every test row is made here (factory_boy), so tests read as the situation they set up."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from energy.models import Edge, Gateway, Meter, MeterGroup, Node, Reading, Site
from joulepoint.tenancy.models import Membership, Organization


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ADMIN


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    timezone = "Europe/Berlin"


class MeterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Meter

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Meter {n}")
    serial = factory.Sequence(lambda n: f"SN-{n:05d}")
    kind = Meter.Kind.LOAD


class GatewayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Gateway

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Gateway {n}")


class MeterGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MeterGroup
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Group {n}")

    @factory.post_generation
    def meters(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.meters.set(extracted)


class ReadingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reading

    meter = factory.SubFactory(MeterFactory)
    ts = factory.LazyFunction(timezone.now)
    received_at = factory.LazyFunction(timezone.now)


def reading_series(start: datetime, step: timedelta, count: int, **fields) -> list[dict]:
    """`count` readings from `start` every `step`; each field is a constant, a list or f(index)."""

    def value(spec, index):
        if callable(spec):
            return spec(index)
        if isinstance(spec, list | tuple):
            return spec[index]
        return spec

    return [{"ts": start + step * i, **{name: value(spec, i) for name, spec in fields.items()}} for i in range(count)]


def readings_create(meter: Meter, rows: Iterable[dict], *, rollup: bool = True) -> list[Reading]:
    """Store readings in bulk (like ingest) and, unless told not to, bring the meter's rollups up to date."""
    from energy.analytics.rollups import rollups_refresh

    now = timezone.now()
    readings = Reading.objects.bulk_create([Reading(meter=meter, received_at=now, **row) for row in rows])
    if rollup and readings:
        stamps = [reading.ts for reading in readings]
        rollups_refresh(meter_id=meter.pk, start=min(stamps), end=max(stamps) + timedelta(seconds=1))
    return readings


def readings_continue(meter: Meter, *, kwh_per_step: float, step: timedelta = timedelta(minutes=5)) -> datetime:
    """Continue the meter's stored register up to now (the demo seeds a week of history; a test
    that adds beside it collides with its timestamps or interleaves two registers). Returns the
    time of the last reading that was there, where the new consumption starts."""
    last = Reading.objects.filter(meter=meter).order_by("-ts").first()
    assert last is not None and last.total_energy is not None, "the meter has no register history to continue"
    count = int((timezone.now() - last.ts) / step)
    rows = reading_series(
        last.ts + step, step, count, total_energy=lambda i: last.total_energy + kwh_per_step * (i + 1)
    )
    readings_create(meter, rows)
    return last.ts


ValueSpec = float | list | Callable[[int], float]


# --- topology ------------------------------------------------------------------------------------


class NodeFactory(factory.django.DjangoModelFactory):
    """A node of a site's graph (rows straight to the table: the rules are the services' tests)."""

    class Meta:
        model = Node

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Node {n}")
    kind = Node.Kind.LOAD


class EdgeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Edge

    parent = factory.SubFactory(NodeFactory)
    child = factory.SubFactory(NodeFactory, site=factory.SelfAttribute("..parent.site"))
    site = factory.SelfAttribute("parent.site")
    organization = factory.SelfAttribute("parent.organization")


# --- automations ---------------------------------------------------------------------------------


class ActionFactory(factory.django.DjangoModelFactory):
    """A webhook action by default; pass `type` and `config` for the others."""

    class Meta:
        model = "automations.Action"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Action {n}")
    type = "webhook"
    config = factory.LazyFunction(
        lambda: {
            "url": "http://127.0.0.1:9/hook",
            "method": "POST",
            "headers": {},
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "timeout_seconds": 2,
        }
    )


class RuleFactory(factory.django.DjangoModelFactory):
    """The seed's HighPower rule unless told otherwise; `actions=[...]` links actions in order."""

    class Meta:
        model = "automations.Rule"
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    event_key = "data.ingested"
    throttle_seconds = 0
    dedupe_template = "meter:{meter_id}"
    jsonlogic = factory.LazyFunction(lambda: {">": [{"var": ["event.total_power", 0]}, 5000]})

    @factory.post_generation
    def actions(obj, create, extracted, **kwargs):
        if create and extracted:
            from automations.models import RuleAction

            for position, action in enumerate(extracted):
                RuleAction.objects.create(rule=obj, action=action, position=position)


class AnnotationFactory(factory.django.DjangoModelFactory):
    """A note on a meter's timeline; its organization is the meter's unless given."""

    class Meta:
        model = "automations.Annotation"

    meter = factory.SubFactory(MeterFactory)
    organization = factory.LazyAttribute(lambda o: o.meter.organization)
    ts = factory.LazyFunction(timezone.now)
    text = factory.Sequence(lambda n: f"Note {n}")
    source = "user"


# --- billing -------------------------------------------------------------------------------------

TWO_RATE_PERIODS = [
    {"name": "weekday", "months": [1, 12], "day_types": ["weekday"], "start": "00:00", "end": "24:00", "rate": "0.30"},
    {"name": "weekend", "months": [1, 12], "day_types": ["weekend"], "start": "00:00", "end": "24:00", "rate": "0.20"},
]


class TariffFactory(factory.django.DjangoModelFactory):
    """A tariff with one version from 2020-01-01 (weekday 0.30, weekend 0.20 per kWh) unless
    `versions=[{...TariffVersion fields}]` is given."""

    class Meta:
        model = "billing.Tariff"
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Tariff {n}")
    currency = "EUR"

    @factory.post_generation
    def versions(obj, create, extracted, **kwargs):
        if not create:
            return
        from billing.models import TariffVersion

        for values in extracted or [{"valid_from": datetime(2020, 1, 1).date(), "periods": TWO_RATE_PERIODS}]:
            TariffVersion.objects.create(tariff=obj, **values)


class WalletFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "billing.Wallet"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Wallet {n}")
    currency = "EUR"


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "billing.Account"
        skip_postgeneration_save = True

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Account {n}")
    tariff = factory.SubFactory(TariffFactory, organization=factory.SelfAttribute("..organization"))

    @factory.post_generation
    def meters(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.meters.set(extracted)


# --- mlops -----------------------------------------------------------------------------------------


class DatasetFactory(factory.django.DjangoModelFactory):
    """A 15-minute dataset of total_power over October 2025; name its source (meters=[...], group or site)."""

    class Meta:
        model = "mlops.Dataset"
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Dataset {n}")
    fields = factory.LazyFunction(lambda: ["total_power"])
    features = factory.LazyFunction(lambda: ["local_hour", "weekday"])
    start = factory.LazyFunction(lambda: datetime(2025, 10, 1, tzinfo=UTC))
    end = factory.LazyFunction(lambda: datetime(2025, 11, 1, tzinfo=UTC))

    @factory.post_generation
    def meters(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.meters.set(extracted)


class DatasetVersionFactory(factory.django.DjangoModelFactory):
    """A ready version row (its artifact path names nothing: build one for a real file)."""

    class Meta:
        model = "mlops.DatasetVersion"

    dataset = factory.SubFactory(DatasetFactory)
    organization = factory.SelfAttribute("dataset.organization")
    number = factory.Sequence(lambda n: n + 1)
    status = "ready"
    row_count = 0
    artifact = "mlops/none.parquet"


class RegisteredModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "mlops.RegisteredModel"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Model {n}")
    purpose = "anomaly"


class TrainingJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "mlops.TrainingJob"

    dataset_version = factory.SubFactory(DatasetVersionFactory)
    organization = factory.SelfAttribute("dataset_version.organization")
    model = factory.SubFactory(RegisteredModelFactory, organization=factory.SelfAttribute("..organization"))
    trainer = "anomaly_isolation_forest"


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A ready version row (its artifact path names nothing: train one for a real model)."""

    class Meta:
        model = "mlops.ModelVersion"

    model = factory.SubFactory(RegisteredModelFactory)
    organization = factory.SelfAttribute("model.organization")
    number = factory.Sequence(lambda n: n + 1)
    trainer = "anomaly_isolation_forest"
    features = factory.LazyFunction(lambda: ["total_power"])
    threshold = 0.1
    artifact = "mlops/none.onnx"
    checksum = "0" * 64


class AssignmentFactory(factory.django.DjangoModelFactory):
    """The model serves `meter` (or pass group=/site= and meter=None)."""

    class Meta:
        model = "mlops.Assignment"

    meter = factory.SubFactory(MeterFactory)
    organization = factory.LazyAttribute(lambda o: (o.meter or o.group or o.site).organization)
    model = factory.SubFactory(RegisteredModelFactory, organization=factory.SelfAttribute("..organization"))
    purpose = factory.SelfAttribute("model.purpose")
    group = None
    site = None


# --- Load management: limits (constraints, schedules, demand response) ---


class SiteConstraintFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "energy.SiteConstraint"

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    max_import_kw = 100.0
    grid_meter = factory.SubFactory(
        MeterFactory,
        site=factory.SelfAttribute("..site"),
        kind=Meter.Kind.GRID,
        serial=factory.Sequence(lambda n: f"GRID-{n}"),
    )


class LoadScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "energy.LoadSchedule"

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    name = factory.Sequence(lambda n: f"Peak window {n}")
    days_of_week = factory.LazyFunction(lambda: [1, 2, 3, 4, 5])
    start_time = factory.LazyFunction(lambda: datetime.strptime("17:00", "%H:%M").time())
    end_time = factory.LazyFunction(lambda: datetime.strptime("20:00", "%H:%M").time())
    max_import_kw = 50.0


class DemandResponseEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "energy.DemandResponseEvent"

    site = factory.SubFactory(SiteFactory)
    organization = factory.SelfAttribute("site.organization")
    starts_at = factory.LazyFunction(timezone.now)
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + timedelta(hours=1))
    limit_kw = 40.0


# --- Load management: chargers, EVSEs, ID tokens, charging sessions ---

STATION_PASSWORD = "station-password-0123456789"


def station_password_hash() -> str:
    from energy.load.chargers import station_password_hash

    return station_password_hash(STATION_PASSWORD)


class ChargerFactory(factory.django.DjangoModelFactory):
    """A charger on a new ev_charger meter (of `site` when given); its station password is
    STATION_PASSWORD."""

    class Meta:
        model = "energy.Charger"

    organization = factory.SubFactory(OrganizationFactory)
    meter = factory.SubFactory(
        MeterFactory, kind="ev_charger", site__organization=factory.SelfAttribute("...organization")
    )
    site = factory.SelfAttribute("meter.site")
    charging_station_id = factory.Sequence(lambda n: f"CS-{n:04d}")
    password_hash = factory.LazyFunction(station_password_hash)

    @classmethod
    def _generate(cls, strategy, params):
        # ChargerFactory(meter=m) belongs to m's organization and site without saying so, and
        # ChargerFactory(site=s) gets a new ev_charger meter of s.
        if "meter" not in params and "site" in params:
            params = {**params, "meter": MeterFactory(site=params["site"], kind="ev_charger")}
        if "meter" in params and "organization" not in params:
            params = {**params, "organization": params["meter"].organization}
        return super()._generate(strategy, params)


class EvseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "energy.Evse"

    charger = factory.SubFactory(ChargerFactory)
    organization = factory.SelfAttribute("charger.organization")
    evse_id = 1
    connector_id = 1


class IdTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "energy.IdToken"

    organization = factory.SubFactory(OrganizationFactory)
    id_token = factory.Sequence(lambda n: f"RFID{n:08d}")
    type = "ISO14443"


class ChargingSessionFactory(factory.django.DjangoModelFactory):
    """An active session the station opened at `charger`."""

    class Meta:
        model = "energy.ChargingSession"

    charger = factory.SubFactory(ChargerFactory)
    site = factory.SelfAttribute("charger.site")
    organization = factory.SelfAttribute("charger.organization")
    transaction_id = factory.Sequence(lambda n: f"TX-{n:06d}")
    source = "ocpp"
    state = "active"
    started_at = factory.LazyFunction(timezone.now)
