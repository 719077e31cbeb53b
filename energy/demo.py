"""The demo tenant that `make run` serves: one depot with five meters and API credentials.

`demo_ensure` is idempotent: it finds or creates the "Joulepoint Demo" organization, its admin
user, the "Demo Depot" site, one meter of each kind (grid, load, PV, battery, EV charger), two
meter groups ("All loads", "Generation and storage"), the depot's topology graph
(energy.topology.demo) and an OAuth2 client, and writes everything the simulator needs to
`var/demo.json`. The month of history is energy.demo_history.

The OAuth2 client secret exists in clear only when it is created (django-oauth-toolkit keeps a
hash), so it is kept in `var/demo.json` (mode 0600) and reused on later runs while it still
matches the stored hash; when the file is gone or the secret no longer matches, the old demo
client is deleted and a fresh one is created. Every credential here is for the demo only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.db import transaction

from energy.demo_history import demo_history_backfill
from energy.models import Meter, MeterGroup, Site
from energy.topology.demo import topology_demo_ensure
from joulepoint.tenancy.models import Application, Membership, Organization
from joulepoint.tenancy.services import all_scopes, api_credential_create

DEMO_ORG_NAME = "Joulepoint Demo"
DEMO_ORG_SLUG = "joulepoint-demo"
DEMO_USERNAME = "demo"
# Fixed and printed on every run: the demo database is local and throwaway.
DEMO_PASSWORD = "demo-password"
DEMO_CREDENTIAL_NAME = "Joulepoint Demo integration"
DEMO_SITE = {
    "name": "Demo Depot",
    "timezone": "Europe/Berlin",
    "address": "Demo Depot, Berlin",
    "latitude": 52.52,
    "longitude": 13.405,
}
# Groups add meters whose flows add up physically: never the grid connection together with the
# devices behind it (that counts the same energy twice).
DEMO_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "All loads",
        "What the depot consumes: the depot load and the EV charger.",
        (Meter.Kind.LOAD, Meter.Kind.EV_CHARGER),
    ),
    ("Generation and storage", "The rooftop PV and the battery.", (Meter.Kind.PV, Meter.Kind.BATTERY)),
)
# The group of earlier demos: it added all five meters together, so it is removed.
DEMO_GROUP_RETIRED = "Demo Depot meters"
# (kind, name, serial); the serial is what makes a rerun find the same meter.
DEMO_METERS: tuple[tuple[str, str, str], ...] = (
    (Meter.Kind.GRID, "Grid connection", "DEMO-GRID-01"),
    (Meter.Kind.LOAD, "Depot load", "DEMO-LOAD-01"),
    (Meter.Kind.PV, "Rooftop PV", "DEMO-PV-01"),
    (Meter.Kind.BATTERY, "Battery storage", "DEMO-BATT-01"),
    (Meter.Kind.EV_CHARGER, "EV charger", "DEMO-EV-01"),
)


# Other apps add their part of the demo (a tariff and wallet, a model, rules, …) from their
# AppConfig.ready(): energy imports none of them. Each extension is called in a transaction with
# keyword arguments organization, user, site and meters (kind → Meter), must be idempotent like
# demo_ensure, and returns what it wants written under its name in var/demo.json
# (JSON-serializable) or None. Extensions run before the month of history is stored (rules then
# fire on its events), or, registered with `after_history`, once it is (a model trains on it).
DemoExtension = Callable[..., dict | None]
_extensions: dict[str, DemoExtension] = {}
_after_history: set[str] = set()


def demo_extension_register(name: str, extend: DemoExtension, *, after_history: bool = False) -> None:
    _extensions[name] = extend
    if after_history:
        _after_history.add(name)
    else:
        _after_history.discard(name)


def _extensions_apply(data: dict, context: dict, *, after_history: bool) -> None:
    for name, extend in _extensions.items():
        if (name in _after_history) == after_history:
            extra = extend(**context)
            if extra is not None:
                data[name] = extra


def demo_state_path() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo.json"


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, data: dict) -> None:
    """Write atomically and readable by the owner only: the file holds secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def _demo_credential(*, organization: Organization, user, previous: dict) -> tuple[Application, str, bool]:
    """The demo OAuth2 client and its clear secret: reused from `previous` when it still matches,
    otherwise rotated (old demo clients deleted, a new one created). Returns (app, secret, created)."""
    client_id = previous.get("client_id")
    secret = previous.get("client_secret")
    if client_id and secret:
        application = Application.objects.filter(organization=organization, client_id=client_id).first()
        if application is not None and check_password(secret, application.client_secret):
            return application, secret, False
    Application.objects.filter(organization=organization, name=DEMO_CREDENTIAL_NAME).delete()
    credential = api_credential_create(
        organization=organization, name=DEMO_CREDENTIAL_NAME, scopes=all_scopes(), user=user
    )
    return credential.application, credential.client_secret, True


def demo_ensure(*, state_path: Path | None = None, history_days: int = 0, simulator_state: Path | None = None) -> dict:
    """Find or create the demo tenant, store `history_days` of simulated history before its first
    reading (energy.demo_history), write `state_path` (default var/demo.json), return its content.

    The returned dict has the admin login, the OAuth2 client id and secret, the site and one
    entry per meter with its device key and secret (what the simulator posts with), and what
    the history stored (`history`).
    """
    path = Path(state_path) if state_path is not None else demo_state_path()
    data, context = _demo_tenant_ensure(_read_state(path))
    if history_days > 0:
        result = demo_history_backfill(
            site=context["site"], meters=context["meters"], days=history_days, state_path=simulator_state
        )
        data["history"] = {"days": history_days, "stored": result.stored, "seconds": round(result.seconds, 1)}
    with transaction.atomic():
        _extensions_apply(data, context, after_history=True)
    _write_state(path, data)
    return data


@transaction.atomic
def _demo_tenant_ensure(previous: dict) -> tuple[dict, dict]:
    """The tenant, its site, meters, groups, credential and topology, and the extensions that run
    before the history: (what var/demo.json says, the extensions' keyword arguments)."""

    organization, _ = Organization.objects.get_or_create(name=DEMO_ORG_NAME, defaults={"slug": DEMO_ORG_SLUG})
    user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME, defaults={"is_staff": True})
    # Reset every run so the printed login always works (demo only).
    user.is_staff = True
    user.is_active = True
    user.set_password(DEMO_PASSWORD)
    user.save()
    Membership.objects.update_or_create(organization=organization, user=user, defaults={"role": Membership.Role.ADMIN})

    site, _ = Site.objects.get_or_create(
        organization=organization,
        name=DEMO_SITE["name"],
        defaults={key: value for key, value in DEMO_SITE.items() if key != "name"},
    )
    meters = []
    for kind, name, serial in DEMO_METERS:
        meter, _ = Meter.objects.get_or_create(
            organization=organization,
            serial=serial,
            defaults={"site": site, "name": name, "kind": kind, "phases": 3, "nominal_voltage": 230.0},
        )
        if not meter.is_active:
            meter.is_active = True
            meter.save(update_fields=["is_active"])
        meters.append(meter)
    by_kind = {meter.kind: meter for meter in meters}
    MeterGroup.objects.filter(organization=organization, name=DEMO_GROUP_RETIRED).delete()
    groups = []
    for name, description, kinds in DEMO_GROUPS:
        group, _ = MeterGroup.objects.get_or_create(
            organization=organization, name=name, defaults={"description": description}
        )
        group.meters.set([by_kind[kind] for kind in kinds])
        groups.append(group)

    application, client_secret, created = _demo_credential(organization=organization, user=user, previous=previous)

    data = {
        "demo_only": True,
        "organization_id": organization.pk,
        "admin_username": DEMO_USERNAME,
        "admin_password": DEMO_PASSWORD,
        "client_id": application.client_id,
        "client_secret": client_secret,
        "client_created": created,
        "scopes": application.scope_list,
        "group_id": groups[0].pk,
        "groups": [{"id": group.pk, "name": group.name} for group in groups],
        "site": {
            "id": site.pk,
            "name": site.name,
            "timezone": site.timezone,
            "latitude": site.latitude,
            "longitude": site.longitude,
        },
        "meters": [
            {
                "id": meter.pk,
                "kind": meter.kind,
                "name": meter.name,
                "serial": meter.serial,
                "device_key": str(meter.device_key),
                "device_secret": meter.device_secret,
            }
            for meter in meters
        ],
    }
    # The depot's energy graph (energy.topology is part of this app, so no extension needed).
    data["topology"] = topology_demo_ensure(site=site, meters=by_kind)
    context = {"organization": organization, "user": user, "site": site, "meters": by_kind}
    _extensions_apply(data, context, after_history=False)
    return data, context
