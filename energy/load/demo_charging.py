"""The OCPP part of `make run`'s demo (registered with energy.demo.demo_extension_register in
EnergyConfig.ready()): two chargers on the demo site, each a meter of kind ev_charger, with known
station passwords (demo only) and the simulated car's RFID card on the ID-token list. `make run`
starts `manage.py ocpp_server` and `manage.py simulate_stations --demo`, which reads them from
var/demo.json (key "ocpp")."""

from __future__ import annotations

import os

from energy.load import chargers
from energy.load.models import Charger, IdToken
from energy.load.ocpp.simulator import SIMULATED_ID_TOKEN
from energy.models import Meter

# (charging station id, meter name, serial, password, max current A, priority); demo only.
DEMO_CHARGERS = (
    ("DEMO-CS-01", "Charger bay 1 (OCPP)", "DEMO-OCPP-01", "demo-station-01-password", 32.0, 1),
    ("DEMO-CS-02", "Charger bay 2 (OCPP)", "DEMO-OCPP-02", "demo-station-02-password", 16.0, 0),
)


def ocpp_demo_url() -> str:
    return f"ws://127.0.0.1:{os.environ.get('DEMO_OCPP_PORT', '8180')}/ocpp"


def charging_demo_ensure(*, organization, site, **_) -> dict:
    """Idempotent: finds or creates the meters and chargers and resets the known passwords."""
    stations = []
    for station_id, name, serial, password, max_current_a, priority in DEMO_CHARGERS:
        meter, _ = Meter.objects.get_or_create(
            organization=organization,
            serial=serial,
            defaults={"site": site, "name": name, "kind": Meter.Kind.EV_CHARGER, "phases": 3},
        )
        charger = Charger.objects.filter(charging_station_id=station_id).first()
        if charger is None:
            charger, _ = chargers.charger_create(
                organization=organization,
                meter=meter,
                charging_station_id=station_id,
                password=password,
                max_current_a=max_current_a,
                priority=priority,
            )
        else:
            charger.password_hash = chargers.station_password_hash(password)
            charger.save(update_fields=["password_hash"])
        stations.append(
            {"charger_id": charger.pk, "charging_station_id": station_id, "password": password, "meter_id": meter.pk}
        )
    IdToken.objects.get_or_create(
        organization=organization, id_token=SIMULATED_ID_TOKEN, type="ISO14443", defaults={"label": "Simulated car"}
    )
    return {"url": ocpp_demo_url(), "stations": stations}
