"""The charging session lifecycle (docs/load.md, "Charging sessions").

A session is opened by the station (TransactionEvent Started) or by the API
(`session_request`: energy wanted, departure, priority override → an `ocpp.RequestStartTransaction`
command whose remoteStartId is the session's, so the station's TransactionEvent finds it).
TransactionEvents update the energy delivered (the charger's Energy.Active.Import.Register minus
its value at the start) and close the session on Ended. The allocator reads open sessions and
pauses or resumes them with `session_pause_set`; the station's own chargingState does not move a
session between active and suspended (the allocator owns that), only Started and Ended do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from energy.downlink.services import device_command_send
from energy.ingest.validation import parse_timestamp
from energy.load.chargers import ACCEPTED, evse_for, id_token_status
from energy.load.models import Charger, ChargingSession, Evse
from energy.load.ocpp.meter_values import readings_from_meter_values
from energy.models import DeviceCommand

State = ChargingSession.State
# The idToken type of sessions started over the API: a token the CSMS made up (OCPP "Central").
API_TOKEN_TYPE = "Central"


class SessionRefused(Exception):
    """A session request or stop that cannot go ahead; `field` names what is wrong (or None)."""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


@transaction.atomic
def session_request(
    *,
    charger: Charger,
    evse: Evse | None = None,
    energy_wanted_kwh: float | None = None,
    departure_at: datetime | None = None,
    priority_override: int | None = None,
    id_token: str = "",
) -> tuple[ChargingSession, DeviceCommand]:
    """Ask the station to start charging: a `requested` session and its
    `ocpp.RequestStartTransaction` command. Refused when the charger is offline (the command
    would only expire) or when the EVSE is not the charger's."""
    charger = Charger.objects.select_for_update().get(pk=charger.pk)
    if not charger.is_online:
        raise SessionRefused(
            f"Charger {charger.charging_station_id} is offline (last seen {charger.last_seen_at or 'never'}); "
            "a session can only be requested while its station is connected.",
        )
    if evse is not None and evse.charger_id != charger.pk:
        raise SessionRefused(f"EVSE {evse.pk} is not an EVSE of charger {charger.pk}.", field="evse")
    session = ChargingSession.objects.create(
        organization_id=charger.organization_id,
        site_id=charger.site_id,
        charger=charger,
        evse=evse,
        source=ChargingSession.Source.API,
        state=State.REQUESTED,
        energy_wanted_kwh=energy_wanted_kwh,
        departure_at=departure_at,
        priority_override=priority_override,
        id_token=id_token,
    )
    # The session's id is unique and positive: a remoteStartId the station echoes back.
    session.remote_start_id = session.pk
    session.save(update_fields=["remote_start_id"])
    payload: dict = {
        "remoteStartId": session.remote_start_id,
        "idToken": {"idToken": id_token or f"JP-{session.pk}", "type": "ISO14443" if id_token else API_TOKEN_TYPE},
    }
    if evse is not None:
        payload["evseId"] = evse.evse_id
    command = device_command_send(device=charger.meter, name="ocpp.RequestStartTransaction", payload=payload)
    return session, command


def session_stop_request(*, session: ChargingSession) -> DeviceCommand | None:
    """Ask the station to end the transaction (`ocpp.RequestStopTransaction`); a session the
    station never started is simply ended (None: nothing to send)."""
    if session.state == State.ENDED:
        raise SessionRefused(f"Session {session.pk} has already ended.")
    if not session.transaction_id:
        ChargingSession.objects.filter(pk=session.pk).update(
            state=State.ENDED, stop_reason="CancelledBeforeStart", ended_at=timezone.now()
        )
        session.refresh_from_db()
        return None
    return device_command_send(
        device=session.charger.meter,
        name="ocpp.RequestStopTransaction",
        payload={"transactionId": session.transaction_id},
    )


def session_pause_set(session: ChargingSession, paused: bool) -> bool:
    """The allocator pauses (suspended) or resumes (active) an open, started session; a
    requested or ended session is left as it is. True when the state moved (the session in
    hand follows; the allocator calls this for every session of every run, so a session already
    in the wanted state costs no query)."""
    source, target = (State.ACTIVE, State.SUSPENDED) if paused else (State.SUSPENDED, State.ACTIVE)
    if session.state != source:
        return False
    moved = ChargingSession.objects.filter(pk=session.pk, state=source).update(state=target, updated_at=timezone.now())
    if moved:
        session.state = target
    return bool(moved)


def _register_kwh(meter_values: list[dict]) -> float | None:
    """The last Energy.Active.Import.Register value among these meter values (kWh)."""
    registers = [r["total_energy"] for r in readings_from_meter_values(meter_values) if "total_energy" in r]
    return registers[-1] if registers else None


@dataclass
class TransactionOutcome:
    session: ChargingSession
    id_token_status: str | None  # what to answer in idTokenInfo (None: the event carried no token)


def _session_for_event(charger: Charger, transaction_id: str, remote_start_id: int | None) -> ChargingSession | None:
    sessions = ChargingSession.objects.select_for_update().filter(charger=charger)
    session = sessions.filter(transaction_id=transaction_id).first()
    if session is None and remote_start_id is not None:
        session = sessions.filter(
            remote_start_id=remote_start_id, transaction_id__isnull=True, state=State.REQUESTED
        ).first()
    return session


@transaction.atomic
def session_transaction_event(*, charger: Charger, event: dict) -> TransactionOutcome:
    """A TransactionEvent (the OCPP request body, camelCase) applied to the charger's sessions:
    Started (or the first event of an unknown transaction) opens or takes the matching API session,
    Updated moves the energy, Ended closes. Events are idempotent: a repeat changes nothing more."""
    info = event["transactionInfo"]
    transaction_id = info["transactionId"]
    now = timezone.now()
    timestamp = parse_timestamp(event["timestamp"]) if event.get("timestamp") else now
    session = _session_for_event(charger, transaction_id, info.get("remoteStartId"))
    token = event.get("idToken") or {}
    token_status = None
    if token:
        token_status = id_token_status(
            organization_id=charger.organization_id, id_token=token.get("idToken", ""), token_type=token.get("type", "")
        )
    evse = None
    if event.get("evse"):
        evse = evse_for(charger=charger, evse_id=event["evse"]["id"], connector_id=event["evse"].get("connectorId"))
    if session is None:
        session = ChargingSession.objects.create(
            organization_id=charger.organization_id,
            site_id=charger.site_id,
            charger=charger,
            evse=evse,
            transaction_id=transaction_id,
            source=ChargingSession.Source.OCPP,
            state=State.ACTIVE,
            id_token=token.get("idToken", ""),
            started_at=timestamp,
        )
    if session.transaction_id is None:
        session.transaction_id = transaction_id
        session.started_at = session.started_at or timestamp
    if session.state == State.REQUESTED:
        session.state = State.ACTIVE
    if evse is not None and session.evse_id is None:
        session.evse = evse
    if token and not session.id_token:
        session.id_token = token.get("idToken", "")
    register = _register_kwh(event.get("meterValue") or [])
    if register is not None:
        if session.meter_start_kwh is None:
            session.meter_start_kwh = register
        session.energy_delivered_kwh = max(0.0, register - session.meter_start_kwh)
    if event["eventType"] == "Ended" and session.state != State.ENDED:
        session.state = State.ENDED
        session.ended_at = timestamp
        session.stop_reason = info.get("stoppedReason", "Local")[:50]
    if token_status is not None and token_status != ACCEPTED and session.state != State.ENDED:
        # An unknown or blocked token: the station is told in idTokenInfo and stops; kept on record.
        session.stop_reason = f"IdToken{token_status}"
    session.save()
    return TransactionOutcome(session=session, id_token_status=token_status)


def session_meter_values(*, charger: Charger, evse_id: int, meter_values: list[dict]) -> bool:
    """MeterValues outside a TransactionEvent: the register moves the open session of that EVSE.
    Returns whether the charger has an open session at all (the door stops asking when not)."""
    open_sessions = ChargingSession.objects.filter(charger=charger, state__in=[State.ACTIVE, State.SUSPENDED])
    if not open_sessions.exists():
        return False
    register = _register_kwh(meter_values)
    if register is None:
        return True
    sessions = open_sessions.filter(meter_start_kwh__isnull=False)
    if evse_id:
        sessions = sessions.filter(evse__evse_id=evse_id)
    for session in sessions:
        session.energy_delivered_kwh = max(0.0, register - session.meter_start_kwh)
        session.save(update_fields=["energy_delivered_kwh", "updated_at"])
    return True
