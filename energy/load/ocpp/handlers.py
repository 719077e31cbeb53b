"""One connected charging station as the CSMS sees it: the `ocpp` package's v201 ChargePoint with
a handler per OCPP request. Handlers are doors: they call energy.load.chargers / sessions in a
worker thread and answer what those return. The thread is channels' database_sync_to_async, not
plain sync_to_async: the ORM is synchronous, and it recycles the connection around each call as a
request does, so this long-lived process survives a database restart and honours CONN_MAX_AGE.
Everything a station sends is stored under its charger's organization, which the connection was
authenticated for; nothing in a message can name another one.

Schema validation is the package's: a request that fails its JSON schema is answered with a
CALLERROR (FormatViolation for a malformed or out-of-range value or an unknown property,
TypeConstraintViolation for a wrong type or length, ProtocolError for a missing required field,
as OCPP-J 2.0.1 §4.3 defines them) and the connection stays open.
"""

from __future__ import annotations

import json
import logging
import uuid

from channels.db import database_sync_to_async
from django.utils import timezone
from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, validate_payload
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action

from energy.ingest.validation import ReadingsInvalid
from energy.load import chargers, sessions
from energy.load.models import Charger
from joulepoint.platform.timefmt import isoz

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_SECONDS = 60


def _now() -> str:
    return isoz(timezone.now())


class CallFailed(Exception):
    """The station answered a CALL with a CALLERROR, or not in time; `result` is what is recorded."""

    def __init__(self, result: dict):
        super().__init__(result.get("error", "failed"))
        self.result = result


class StationConnection(ChargePoint):
    """A station's socket; `charger` is the row it authenticated as."""

    def __init__(self, charger: Charger, connection, *, response_timeout: float = 30, batcher=None):
        super().__init__(charger.charging_station_id, connection, response_timeout=response_timeout)
        self.charger = charger
        self.batcher = batcher  # a MeterValuesBatcher shared by the process's stations, or None
        # Whether a session may be open here (None: not known yet); MeterValues only look for one then.
        self.session_open: bool | None = None

    @on(Action.boot_notification)
    async def on_boot_notification(self, charging_station: dict, reason: str, **_):
        info = chargers.BootInfo(
            vendor=charging_station.get("vendor_name", ""),
            model=charging_station.get("model", ""),
            serial_number=charging_station.get("serial_number", ""),
            firmware_version=charging_station.get("firmware_version", ""),
        )
        await database_sync_to_async(chargers.charger_booted)(charger=self.charger, info=info)
        return call_result.BootNotification(current_time=_now(), interval=HEARTBEAT_INTERVAL_SECONDS, status="Accepted")

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_):
        await database_sync_to_async(chargers.charger_seen)(charger=self.charger)
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_status: str, evse_id: int, connector_id: int, **_):
        await database_sync_to_async(chargers.evse_status_set)(
            charger=self.charger, evse_id=evse_id, connector_id=connector_id, status=connector_status
        )
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict, **_):
        status = await database_sync_to_async(chargers.id_token_status)(
            organization_id=self.charger.organization_id, id_token=id_token["id_token"], token_type=id_token["type"]
        )
        return call_result.Authorize(id_token_info={"status": status})

    @on(Action.transaction_event)
    async def on_transaction_event(self, **request):
        # The services read the request as it was on the wire (camelCase).
        event = snake_to_camel_case(request)
        outcome = await database_sync_to_async(self._transaction_event)(event)
        self.session_open = outcome.session.state != "ended"
        if outcome.id_token_status is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info={"status": outcome.id_token_status})

    def _transaction_event(self, event: dict) -> sessions.TransactionOutcome:
        self._readings_store(event.get("meterValue") or [])
        return sessions.session_transaction_event(charger=self.charger, event=event)

    @on(Action.meter_values)
    async def on_meter_values(self, evse_id: int, meter_value: list, **_):
        meter_values = snake_to_camel_case(meter_value)
        if self.batcher is None:
            await database_sync_to_async(self._readings_store)(meter_values)
        else:
            try:
                await self.batcher.store(self.charger, meter_values)
            except ReadingsInvalid as exc:
                logger.warning("%s: meter values refused: %s", self.id, exc)
        if self.session_open is not False:
            self.session_open = await database_sync_to_async(sessions.session_meter_values)(
                charger=self.charger, evse_id=evse_id, meter_values=meter_values
            )
        return call_result.MeterValues()

    def _readings_store(self, meter_values: list[dict]) -> None:
        try:
            chargers.charger_readings_store(charger=self.charger, meter_values=meter_values)
        except ReadingsInvalid as exc:
            # The station's clock or values are off: the message is still answered (a CALLERROR
            # would make it resend the same values forever), the readings are not stored.
            logger.warning("%s: meter values refused: %s", self.id, exc)

    # Notifications this CSMS takes note of and does not act on (yet): answered so that stations
    # which send them do not retry them.
    @on(Action.notify_event)
    async def on_notify_event(self, **_):
        return call_result.NotifyEvent()

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, type: str, **_):
        logger.info("%s: security event %s", self.id, type)
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, **_):
        return call_result.FirmwareStatusNotification()

    async def route_message(self, raw_msg):
        # The package logs and drops a frame that is not OCPP-J at all; OCPP-J 2.0.1 §4.3 asks for
        # a CALLERROR RpcFrameworkError, which tells a station's developer what went wrong.
        try:
            parsed = json.loads(raw_msg)
        except ValueError:
            parsed = None
        if not (isinstance(parsed, list) and len(parsed) >= 3 and parsed[0] in (2, 3, 4)):
            logger.warning("%s: not an OCPP-J message: %.200s", self.id, raw_msg)
            known = isinstance(parsed, list) and len(parsed) > 1 and isinstance(parsed[1], str)
            unique_id = parsed[1] if known else "-1"
            await self._send(json.dumps([4, unique_id, "RpcFrameworkError", "Not an OCPP-J message", {}]))
            return
        await super().route_message(raw_msg)

    async def call_raw(self, action: str, payload: dict) -> dict:
        """Send a CALL with `payload` exactly as given (the command's body) and return the
        CALLRESULT's body; CallFailed on a CALLERROR, a timeout or a payload that fails the schema.

        The package's `call()` takes a dataclass and rebuilds the body through snake_case; the
        contract is that a command's payload goes on the wire as it is, so the CALL is built here
        with the package's own Call, validation and response queue."""
        message = Call(unique_id=str(uuid.uuid4()), action=action, payload=payload)
        try:
            await validate_payload(message, self._ocpp_version)
        except OCPPError as exc:
            raise CallFailed({"error": type(exc).__name__, "description": str(exc)}) from None
        async with self._call_lock:
            await self._send(message.to_json())
            try:
                response = await self._get_specific_response(message.unique_id, self._response_timeout)
            except TimeoutError:
                raise CallFailed(
                    {"error": "Timeout", "description": f"no answer in {self._response_timeout} s"}
                ) from None
        if response.message_type_id == MessageType.CallError:
            raise CallFailed(
                {
                    "error": response.error_code,
                    "description": response.error_description,
                    "details": response.error_details,
                }
            )
        return response.payload
