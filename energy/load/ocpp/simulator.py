"""A simulated OCPP 2.0.1 charging station on the `ocpp` package's v201 ChargePoint: it boots,
reports its EVSE, plugs a car in, authorizes, starts a transaction and sends MeterValues every
`interval` seconds whose power follows the limit of the last SetChargingProfile (docs/load.md).
It answers RequestStartTransaction, RequestStopTransaction, SetChargingProfile,
ClearChargingProfile and Reset as a station would. Used by the demo (`manage.py simulate_stations`),
the e2e tests and bench/ocpp_stations.py; it needs no Django.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from datetime import UTC, datetime

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
VOLTAGE = 230.0
# The RFID card of the simulated car (the demo puts it on its ID-token list).
SIMULATED_ID_TOKEN = "SIMULATED-CAR"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def basic_auth_header(station_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


async def station_connect(url: str, station_id: str, password: str, **kwargs):
    """A websockets client connection to `url`/{station_id} with HTTP Basic auth (profile 1)."""
    return await connect(
        f"{url.rstrip('/')}/{station_id}",
        subprotocols=[SUBPROTOCOL],
        additional_headers={"Authorization": basic_auth_header(station_id, password)},
        open_timeout=kwargs.pop("open_timeout", 30),
        ping_interval=kwargs.pop("ping_interval", None),
        **kwargs,
    )


def profile_limit_a(profile: dict, *, phases: int) -> float | None:
    """The current limit (A per phase) a charging profile sets now: its first period."""
    schedules = profile.get("charging_schedule") or []
    if not schedules:
        return None
    schedule = schedules[0]
    periods = schedule.get("charging_schedule_period") or []
    if not periods:
        return None
    limit = float(periods[0]["limit"])
    if schedule.get("charging_rate_unit") == "W":
        used = int(periods[0].get("number_phases") or phases)
        return limit / (VOLTAGE * used)
    return limit


class SimulatedStation(ChargePoint):
    """One station with one EVSE and one car that charges at the allowed current."""

    def __init__(
        self,
        station_id: str,
        connection,
        *,
        max_current_a: float = 32.0,
        phases: int = 3,
        id_token: str = SIMULATED_ID_TOKEN,
        start_energy_kwh: float | None = None,
        response_timeout: float = 30,
    ):
        super().__init__(station_id, connection, response_timeout=response_timeout)
        self.max_current_a = max_current_a
        self.phases = phases
        self.id_token = id_token
        self.limit_a = max_current_a  # what the last charging profile allows
        self.register_wh = (start_energy_kwh if start_energy_kwh is not None else random.uniform(100, 5000)) * 1000
        self.transaction_id: str | None = None
        self.seq_no = 0
        self.received: list[tuple[str, dict]] = []  # the CALLs the CSMS sent, for tests
        self._sampled_at: float | None = None
        self._pending: set[asyncio.Task] = set()

    # --- what the CSMS asks -------------------------------------------------------------------
    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_):
        self.received.append(("SetChargingProfile", {"evse_id": evse_id, "charging_profile": charging_profile}))
        limit = profile_limit_a(charging_profile, phases=self.phases)
        if limit is not None:
            self.limit_a = max(0.0, min(limit, self.max_current_a))
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **request):
        self.received.append(("ClearChargingProfile", request))
        self.limit_a = self.max_current_a
        return call_result.ClearChargingProfile(status="Accepted")

    @on(Action.request_start_transaction)
    def on_request_start_transaction(self, id_token: dict, remote_start_id: int, **request):
        self.received.append(("RequestStartTransaction", {"id_token": id_token, "remote_start_id": remote_start_id}))
        if self.transaction_id is not None:
            return call_result.RequestStartTransaction(status="Rejected")
        self._later(self.transaction_start(remote_start_id=remote_start_id, token=id_token))
        return call_result.RequestStartTransaction(status="Accepted")

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str, **_):
        self.received.append(("RequestStopTransaction", {"transaction_id": transaction_id}))
        if transaction_id != self.transaction_id:
            return call_result.RequestStopTransaction(status="Rejected")
        self._later(self.transaction_stop(reason="Remote", trigger="RemoteStop"))
        return call_result.RequestStopTransaction(status="Accepted")

    @on(Action.reset)
    def on_reset(self, type: str, **_):
        self.received.append(("Reset", {"type": type}))
        return call_result.Reset(status="Accepted")

    def _later(self, coroutine) -> None:
        # A station answers first and acts after: the CALL that follows must not wait on it.
        task = asyncio.get_running_loop().create_task(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # --- what the station says ---------------------------------------------------------------
    async def boot(self) -> call_result.BootNotification:
        response = await self.call(
            call.BootNotification(
                charging_station={
                    "model": "Simulated AC 22",
                    "vendor_name": "Joulepoint",
                    "serial_number": self.id[:25],
                },
                reason="PowerUp",
            )
        )
        await self.status("Available")
        return response

    async def status(self, connector_status: str) -> None:
        await self.call(
            call.StatusNotification(timestamp=now_iso(), connector_status=connector_status, evse_id=1, connector_id=1)
        )

    async def authorize(self, token: str | None = None) -> str:
        response = await self.call(call.Authorize(id_token={"id_token": token or self.id_token, "type": "ISO14443"}))
        return response.id_token_info["status"]

    def power_w(self) -> float:
        return self.limit_a * VOLTAGE * self.phases if self.transaction_id else 0.0

    def sample(self) -> dict:
        """A MeterValue now, after moving the register by the power since the last sample."""
        loop_time = asyncio.get_running_loop().time()
        if self._sampled_at is not None:
            self.register_wh += self.power_w() * (loop_time - self._sampled_at) / 3600.0
        self._sampled_at = loop_time
        current = self.limit_a if self.transaction_id else 0.0
        sampled = [
            {
                "value": round(self.register_wh, 1),
                "measurand": "Energy.Active.Import.Register",
                "unit_of_measure": {"unit": "Wh"},
            },
            {"value": round(self.power_w(), 1), "measurand": "Power.Active.Import", "unit_of_measure": {"unit": "W"}},
        ]
        for phase in ("L1", "L2", "L3")[: self.phases]:
            sampled.append(
                {
                    "value": round(current, 2),
                    "measurand": "Current.Import",
                    "phase": phase,
                    "unit_of_measure": {"unit": "A"},
                }
            )
            sampled.append(
                {"value": VOLTAGE, "measurand": "Voltage", "phase": f"{phase}-N", "unit_of_measure": {"unit": "V"}}
            )
        return {"timestamp": now_iso(), "sampled_value": sampled}

    async def transaction_event(self, event_type: str, trigger: str, **extra) -> call_result.TransactionEvent:
        self.seq_no += 1
        info = {"transaction_id": self.transaction_id, **extra.pop("info", {})}
        return await self.call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=now_iso(),
                trigger_reason=trigger,
                seq_no=self.seq_no,
                transaction_info=info,
                meter_value=[self.sample()],
                evse={"id": 1, "connector_id": 1},
                **extra,
            )
        )

    async def transaction_start(self, *, remote_start_id: int | None = None, token: dict | None = None):
        await self.status("Occupied")
        self.transaction_id = uuid.uuid4().hex[:20]
        self.limit_a = self.max_current_a
        info = {"charging_state": "Charging"}
        if remote_start_id is not None:
            info["remote_start_id"] = remote_start_id
        token = token or {"id_token": self.id_token, "type": "ISO14443"}
        trigger = "RemoteStart" if remote_start_id is not None else "Authorized"
        return await self.transaction_event("Started", trigger, info=info, id_token=token)

    async def transaction_stop(self, *, reason: str = "Local", trigger: str = "StopAuthorized"):
        if self.transaction_id is None:
            return None
        response = await self.transaction_event("Ended", trigger, info={"stopped_reason": reason})
        self.transaction_id = None
        await self.status("Available")
        return response

    async def meter_values(self) -> None:
        await self.call(call.MeterValues(evse_id=1, meter_value=[self.sample()]))


async def station_simulate(
    url: str,
    station_id: str,
    password: str,
    *,
    interval: float = 5.0,
    max_current_a: float = 32.0,
    phases: int = 3,
    id_token: str = SIMULATED_ID_TOKEN,
    reconnect: bool = True,
) -> None:
    """Run one station for ever: connect, boot, start charging, MeterValues every `interval`
    seconds; reconnect with backoff when the connection drops (the server restarted)."""
    backoff = 1.0
    while True:
        try:
            async with await station_connect(url, station_id, password) as connection:
                station = SimulatedStation(
                    station_id, connection, max_current_a=max_current_a, phases=phases, id_token=id_token
                )
                reader = asyncio.create_task(station.start())
                try:
                    await station.boot()
                    await station.authorize()
                    await station.transaction_start()
                    backoff = 1.0
                    while not reader.done():
                        await asyncio.sleep(interval)
                        await station.meter_values()
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await reader
        except (OSError, ConnectionClosed, TimeoutError) as exc:
            logger.warning("%s: %s; reconnecting in %.0f s", station_id, exc, backoff)
        if not reconnect:
            return
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 60.0)
