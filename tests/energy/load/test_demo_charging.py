"""The OCPP part of the demo: two chargers whose known passwords authenticate, idempotently."""

from __future__ import annotations

import pytest

from energy.load import chargers
from energy.load.demo_charging import charging_demo_ensure
from energy.load.models import Charger, IdToken
from energy.load.ocpp.simulator import SIMULATED_ID_TOKEN

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_two_chargers_with_known_passwords_twice(org, site):
    first = charging_demo_ensure(organization=org, site=site)
    again = charging_demo_ensure(organization=org, site=site)
    assert first == again and first["url"].startswith("ws://127.0.0.1:")
    assert Charger.objects.for_org(org).count() == 2
    for station in first["stations"]:
        charger = chargers.charger_authenticate(
            charging_station_id=station["charging_station_id"], password=station["password"]
        )
        assert charger is not None and charger.meter.kind == "ev_charger" and charger.site == site
    token = IdToken.objects.get(organization=org, id_token=SIMULATED_ID_TOKEN)
    assert (
        chargers.id_token_status(organization_id=org.pk, id_token=token.id_token, token_type=token.type) == "Accepted"
    )
