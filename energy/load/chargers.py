"""Chargers, their EVSEs and the organization's ID tokens: the writes the API, the admin, the demo
and the OCPP door share (docs/load.md, "OCPP").

A station authenticates with HTTP Basic (OCPP security profile 1): its password is generated
here, shown once (create and rotate) and kept as a Django password hash.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import transaction
from django.utils import timezone

from energy.downlink.services import device_command_send
from energy.ingest import store
from energy.ingest.validation import ReadingsInvalid
from energy.load.models import Charger, Evse, IdToken
from energy.load.ocpp.meter_values import readings_from_meter_values
from energy.models import DeviceCommand, Meter, Site
from joulepoint.tenancy.models import Organization

# OCPP 2.0.1 (A00.FR.302): a Basic-auth password is 16 to 40 characters.
STATION_PASSWORD_BYTES = 24
# The `source` of readings and events that came in over OCPP.
OCPP_SOURCE = "ocpp"
CHARGER_FIELDS = ("min_current_a", "max_current_a", "phases", "priority")


class StationPasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 hasher with few iterations, for station passwords only.

    Key stretching protects passwords people choose; a station password is 192 random bits from
    `secrets`, which no number of iterations makes harder to guess. The default 1,000,000
    iterations would cost ~0.5 s of CPU on every station's (re)connection: after a server
    restart, 2,000 stations would queue for minutes (bench/ocpp_stations.py). Used directly (not
    through PASSWORD_HASHERS), so it needs no setting and tests' hasher overrides do not touch it."""

    algorithm = "pbkdf2_sha256_station"
    iterations = 1000


_station_hasher = StationPasswordHasher()


def station_password_hash(password: str) -> str:
    return _station_hasher.encode(password, _station_hasher.salt())


def station_password_check(password: str, encoded: str) -> bool:
    if not encoded.startswith(f"{StationPasswordHasher.algorithm}$"):
        return False
    return _station_hasher.verify(password, encoded)


class ChargerInvalid(Exception):
    """A charger write that breaks a rule; `errors` maps a field to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def station_password_new() -> str:
    # 32 URL-safe characters: inside OCPP's 16-40, and nothing a Basic-auth header needs escaped.
    return secrets.token_urlsafe(STATION_PASSWORD_BYTES)


def charger_check(*, organization: Organization, meter: Meter | None, values: dict, instance: Charger | None = None):
    errors: dict[str, str] = {}
    current = {name: getattr(instance, name) for name in CHARGER_FIELDS} if instance else {}
    merged = {**current, **{k: v for k, v in values.items() if k in CHARGER_FIELDS}}
    low, high = merged.get("min_current_a", 6.0), merged.get("max_current_a", 32.0)
    if low is not None and low < 0:
        errors["min_current_a"] = "must be ≥ 0 A"
    if low is not None and high is not None and low > high:
        errors["max_current_a"] = f"must be ≥ min_current_a ({low} A)"
    if meter is not None:
        if meter.organization_id != organization.pk:
            errors["meter"] = "no such meter in this organization"
        elif meter.kind != Meter.Kind.EV_CHARGER:
            errors["meter"] = f"must be a meter of kind ev_charger, not {meter.kind}"
        elif Charger.objects.filter(meter=meter).exclude(pk=getattr(instance, "pk", None)).exists():
            errors["meter"] = "this meter already belongs to a charger"
    station_id = values.get("charging_station_id")
    if station_id is not None:
        if not station_id or "/" in station_id or station_id != station_id.strip():
            errors["charging_station_id"] = "1 to 48 characters, no '/' and no surrounding spaces"
        elif Charger.objects.filter(charging_station_id=station_id).exclude(pk=getattr(instance, "pk", None)).exists():
            errors["charging_station_id"] = "another charger already has this charging station id"
    if errors:
        raise ChargerInvalid(errors)


@transaction.atomic
def charger_create(
    *,
    organization: Organization,
    charging_station_id: str,
    meter: Meter | None = None,
    site: Site | None = None,
    meter_name: str = "",
    password: str | None = None,
    evse_count: int = 1,
    **values,
) -> tuple[Charger, str]:
    """A charger on an existing ev_charger meter, or on a new one at `site`; returns the charger
    and its station password in clear (the only time it exists so)."""
    if meter is None:
        if site is None or site.organization_id != organization.pk:
            raise ChargerInvalid({"site": "give a meter, or a site of this organization to create one at"})
        serial = f"OCPP-{charging_station_id}"
        if Meter.objects.for_org(organization).filter(serial=serial).exists():
            raise ChargerInvalid({"charging_station_id": f"a meter with serial {serial!r} already exists"})
        meter = Meter.objects.create(
            organization=organization,
            site=site,
            name=meter_name or f"EV charger {charging_station_id}",
            serial=serial,
            kind=Meter.Kind.EV_CHARGER,
        )
    charger_check(organization=organization, meter=meter, values={**values, "charging_station_id": charging_station_id})
    password = password or station_password_new()
    charger = Charger.objects.create(
        organization=organization,
        site_id=meter.site_id,
        meter=meter,
        charging_station_id=charging_station_id,
        password_hash=station_password_hash(password),
        **{k: v for k, v in values.items() if k in CHARGER_FIELDS},
    )
    for evse_id in range(1, evse_count + 1):
        Evse.objects.create(organization=organization, charger=charger, evse_id=evse_id, connector_id=1)
    return charger, password


def charger_update(*, charger: Charger, values: dict) -> Charger:
    charger_check(organization=charger.organization, meter=None, values=values, instance=charger)
    for name in CHARGER_FIELDS:
        if name in values:
            setattr(charger, name, values[name])
    charger.save(update_fields=[name for name in CHARGER_FIELDS if name in values] or None)
    return charger


def charger_password_rotate(*, charger: Charger) -> str:
    """A new station password; the old one stops working at the station's next connection."""
    password = station_password_new()
    charger.password_hash = station_password_hash(password)
    charger.save(update_fields=["password_hash"])
    return password


def charger_authenticate(*, charging_station_id: str, password: str) -> Charger | None:
    """The charger with this identity and password, or None (unknown id, bad or unset password)."""
    charger = Charger.objects.select_related("meter").filter(charging_station_id=charging_station_id).first()
    if charger is None or not charger.password_hash or not charger.meter.is_active:
        # Hash anyway, so an unknown id takes as long as a bad password (no id enumeration by timing).
        station_password_hash(password)
        return None
    return charger if station_password_check(password, charger.password_hash) else None


@dataclass(frozen=True)
class BootInfo:
    vendor: str
    model: str
    serial_number: str = ""
    firmware_version: str = ""


def charger_booted(*, charger: Charger, info: BootInfo) -> None:
    now = timezone.now()
    Charger.objects.filter(pk=charger.pk).update(
        vendor=info.vendor[:50],
        model=info.model[:50],
        serial_number=info.serial_number[:25],
        firmware_version=info.firmware_version[:50],
        is_online=True,
        last_seen_at=now,
    )


def charger_presence_set(*, charger: Charger, online: bool) -> None:
    """Connected (online, seen now) or disconnected (offline)."""
    update = {"is_online": online}
    if online:
        update["last_seen_at"] = timezone.now()
    Charger.objects.filter(pk=charger.pk).update(**update)


def charger_seen(*, charger: Charger) -> datetime:
    now = timezone.now()
    Charger.objects.filter(pk=charger.pk).update(last_seen_at=now, is_online=True)
    return now


def evse_for(*, charger: Charger, evse_id: int, connector_id: int | None = None) -> Evse:
    """The charger's EVSE row (created when the station names one we did not know)."""
    evse, _ = Evse.objects.get_or_create(
        charger=charger,
        evse_id=evse_id,
        connector_id=connector_id or 1,
        defaults={"organization_id": charger.organization_id},
    )
    return evse


def evse_status_set(*, charger: Charger, evse_id: int, connector_id: int, status: str) -> Evse:
    evse = evse_for(charger=charger, evse_id=evse_id, connector_id=connector_id)
    if status not in Evse.Status.values:
        status = Evse.Status.UNAVAILABLE
    evse.status = status
    evse.save(update_fields=["status", "updated_at"])
    return evse


# OCPP AuthorizationStatusEnumType values this platform answers.
ACCEPTED, INVALID, EXPIRED, BLOCKED, UNKNOWN = "Accepted", "Invalid", "Expired", "Blocked", "Unknown"
# Token types a station sends without a value to check against a list.
UNCHECKED_TOKEN_TYPES = {"NoAuthorization", "Central"}


def id_token_status(*, organization_id: int, id_token: str, token_type: str, now: datetime | None = None) -> str:
    """What the organization's token list says of a token: Accepted, Invalid (not on the list),
    Expired (past valid_until) or Blocked (deactivated)."""
    if token_type in UNCHECKED_TOKEN_TYPES:
        return ACCEPTED
    row = IdToken.objects.for_org(organization_id).filter(id_token=id_token, type=token_type).first()
    if row is None:
        return INVALID
    if not row.is_active:
        return BLOCKED
    if row.valid_until is not None and row.valid_until <= (now or timezone.now()):
        return EXPIRED
    return ACCEPTED


def charger_readings_store(*, charger: Charger, meter_values: list[dict]) -> list[dict]:
    """A station's MeterValues as readings of the charger's meter, through the one ingest path
    (so analytics, power quality and rules see them); returns the readings. A MeterValue the
    ingest refuses (a clock never set, a value out of bounds) raises ReadingsInvalid."""
    readings = readings_from_meter_values(meter_values)
    if readings:
        store.reading_batch_ingest(device=charger.meter, items=readings, source=OCPP_SOURCE)
    return readings


def charger_reset_request(*, charger: Charger, reset_type: str = "Immediate") -> DeviceCommand:
    """OCPP Reset through the downlink (the OCPP server sends it while the station is connected)."""
    if reset_type not in ("Immediate", "OnIdle"):
        raise ChargerInvalid({"type": "Immediate or OnIdle"})
    return device_command_send(device=charger.meter, name="ocpp.Reset", payload={"type": reset_type})


def chargers_readings_store_many(*, items: list[tuple[Charger, list[dict]]]) -> list[Exception | None]:
    """Many stations' MeterValues in one ingest transaction (the MQTT bridge's way: prepare each
    station's batch, store them together), so one commit serves every station that sent while
    the previous one ran. Returns per item None (stored) or the ReadingsInvalid that refused it;
    a database error fails the whole call."""
    outcomes: list[Exception | None] = []
    prepared = []
    for charger, meter_values in items:
        readings = readings_from_meter_values(meter_values)
        try:
            if readings:
                prepared.append(store.readings_prepare(device=charger.meter, items=readings))
            outcomes.append(None)
        except ReadingsInvalid as exc:
            outcomes.append(exc)
    if prepared:
        with transaction.atomic():
            store.readings_store(batches=prepared, source=OCPP_SOURCE)
    return outcomes
