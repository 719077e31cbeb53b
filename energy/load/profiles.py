"""OCPP 2.0.1 charging profiles as the request bodies go on the wire (camelCase JSON): the
allocator's setpoints travel as `ocpp.SetChargingProfile` device commands whose payload the OCPP
door sends unchanged (docs/load.md, "Allocator").

- A session's setpoint: a TxProfile on its EVSE for its transaction, one period from now with the
  limit in A per phase (0 A pauses the session: OCPP's way to suspend charging). Its profile id
  is the session's id, so every new setpoint replaces the previous profile of that session.
- The station's ceiling: a ChargingStationMaxProfile on evseId 0, from the charger's maximum and
  the site's per-phase limit.
"""

from __future__ import annotations

SET_CHARGING_PROFILE = "ocpp.SetChargingProfile"
CLEAR_CHARGING_PROFILE = "ocpp.ClearChargingProfile"
TX_STACK_LEVEL = 0
STATION_MAX_STACK_LEVEL = 0
# Station-wide profiles get ids of their own range, away from session ids (a session id is the
# TxProfile's id): OCPP replaces a profile that has the same id.
STATION_MAX_PROFILE_ID_BASE = 1_000_000_000


def _schedule(schedule_id: int, limit_a: float, phases: int) -> list[dict]:
    return [
        {
            "id": schedule_id,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(limit_a, 1), "numberPhases": phases}],
        }
    ]


def tx_profile_payload(*, session_id: int, evse_id: int, transaction_id: str, limit_a: float, phases: int) -> dict:
    """SetChargingProfileRequest for one session's setpoint."""
    return {
        "evseId": evse_id,
        "chargingProfile": {
            "id": session_id,
            "stackLevel": TX_STACK_LEVEL,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": transaction_id,
            "chargingSchedule": _schedule(session_id, limit_a, phases),
        },
    }


def station_max_profile_payload(*, charger_id: int, limit_a: float, phases: int) -> dict:
    """SetChargingProfileRequest: the station's ceiling, on evseId 0."""
    profile_id = STATION_MAX_PROFILE_ID_BASE + charger_id
    return {
        "evseId": 0,
        "chargingProfile": {
            "id": profile_id,
            "stackLevel": STATION_MAX_STACK_LEVEL,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": _schedule(profile_id, limit_a, phases),
        },
    }


def clear_tx_profile_payload(*, session_id: int) -> dict:
    """ClearChargingProfileRequest for a session's TxProfile (when the session has ended)."""
    return {"chargingProfileId": session_id}
