"""The event keys the energy app publishes (registered in EnergyConfig.ready()).

`data.ingested` carries each stored batch's readings and is transient (the readings are stored);
the others are written to the outbox with their cause. demand_response and peak.detected belong
to load management (docs/design.md).
"""

from __future__ import annotations

from joulepoint.events.keys import event_key_register

DATA_INGESTED = "data.ingested"
PQ_EVENT = "pq.event"
PROTECTION_EVENT = "protection.event"
DEMAND_RESPONSE = "demand_response"
PEAK_DETECTED = "peak.detected"
# One per changed setpoint of an allocation run (energy.load.services).
LOAD_SETPOINT = "load.setpoint"


def event_keys_register() -> None:
    event_key_register(DATA_INGESTED, transient=True)
    for key in (PQ_EVENT, PROTECTION_EVENT, DEMAND_RESPONSE, PEAK_DETECTED, LOAD_SETPOINT):
        event_key_register(key)
