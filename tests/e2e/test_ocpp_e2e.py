"""The OCPP server as its own process (`manage.py ocpp_server`) and a simulated charging station
written with the `ocpp` package's v201 ChargePoint, over a real socket: boot, status, authorize,
a transaction with MeterValues stored as readings, a SetChargingProfile command from the database
reaching the station with its result recorded, RequestStopTransaction, a bad password refused and
a schema-invalid message answered with FormatViolation on a connection that stays open."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import InvalidStatus

from energy.downlink import services as downlink
from energy.load import sessions
from energy.load.models import Charger, ChargingSession, Evse
from energy.load.ocpp.simulator import SimulatedStation, station_connect
from energy.models import DeviceCommand, Reading
from tests import factories
from tests.e2e.conftest import VENV_BIN, ServerProcess, _wait_for_http
from tests.net import free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def ocpp_server_url(transactional_db) -> Iterator[str]:
    port = free_port()
    server = ServerProcess(
        "ocpp-server",
        [str(VENV_BIN / "python"), "manage.py", "ocpp_server", "--port", str(port), "--poll-seconds", "0.2"],
    )
    try:
        _wait_for_http(server, f"http://127.0.0.1:{port}/")  # any HTTP answer: it is listening
        yield f"ws://127.0.0.1:{port}/ocpp"
    finally:
        server.stop()


async def eventually(check, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await sync_to_async(check)()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def _profile(transaction_id: str, limit: float) -> dict:
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": 101, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
            "transactionId": transaction_id,
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": 3}]}],
        },
    }  # fmt: skip


async def test_a_station_charges_through_the_ocpp_server_process(ocpp_server_url):
    charger = await sync_to_async(factories.ChargerFactory)(max_current_a=32)
    await sync_to_async(factories.IdTokenFactory)(organization=charger.organization, id_token="E2E-CARD")

    # A bad password is refused during the handshake.
    with pytest.raises(InvalidStatus) as refused:
        await station_connect(ocpp_server_url, charger.charging_station_id, "not-the-password-000")
    assert refused.value.response.status_code == 401

    connection = await station_connect(ocpp_server_url, charger.charging_station_id, factories.STATION_PASSWORD)
    station = SimulatedStation(charger.charging_station_id, connection, id_token="E2E-CARD", start_energy_kwh=50.0)
    reader = asyncio.create_task(station.start())
    try:
        assert (await station.boot()).status == "Accepted"
        assert await station.authorize() == "Accepted"
        started = await station.transaction_start()
        assert started.id_token_info["status"] == "Accepted"
        await station.meter_values()

        online = await sync_to_async(Charger.objects.get)(pk=charger.pk)
        assert online.is_online and online.vendor == "Joulepoint"
        assert (await sync_to_async(Evse.objects.get)(charger=charger)).status == "Occupied"
        session = await sync_to_async(ChargingSession.objects.get)(charger=charger)
        assert session.state == "active" and session.transaction_id == station.transaction_id
        reading = await eventually(
            lambda: Reading.objects.filter(meter_id=charger.meter_id, total_power__isnull=False).order_by("-ts").first()
        )
        assert reading.total_power == pytest.approx(32 * 230 * 3)
        assert reading.total_energy == pytest.approx(50.0, abs=0.1)

        # The allocator's way of steering: a DeviceCommand carrying the OCPP body as is.
        command = await sync_to_async(downlink.device_command_send)(
            device=charger.meter, name="ocpp.SetChargingProfile", payload=_profile(station.transaction_id, 8.0)
        )
        acked = await eventually(lambda: DeviceCommand.objects.filter(pk=command.pk, status="acked").first())
        assert acked.result == {"status": "Accepted"} and acked.channel == "ocpp"
        assert station.limit_a == 8.0
        await station.meter_values()
        slowed = await eventually(
            lambda: Reading.objects.filter(meter_id=charger.meter_id, total_power=8.0 * 230 * 3).first()
        )
        assert slowed.current_a == pytest.approx(8.0)

        # A schema-invalid message: CALLERROR FormatViolation, and the connection stays usable.
        await connection.send(json.dumps([2, "bad-1", "Heartbeat", {"unexpected": True}]))
        answer = await asyncio.wait_for(_call_error(station, "bad-1"), 10)
        assert answer[2] == "FormatViolation"
        await station.status("Occupied")  # still answered

        # RequestStopTransaction through the session service, as the API's stop does.
        stop = await sync_to_async(sessions.session_stop_request)(session=session)
        await eventually(lambda: DeviceCommand.objects.filter(pk=stop.pk, status="acked").exists())
        ended = await eventually(lambda: ChargingSession.objects.filter(pk=session.pk, state="ended").first())
        assert ended.stop_reason == "Remote" and ended.energy_delivered_kwh >= 0
    finally:
        reader.cancel()
        await connection.close()
        with contextlib.suppress(BaseException):
            await reader
    await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_online)


async def _call_error(station: SimulatedStation, unique_id: str) -> list:
    """The station's reader hands CALLRESULT/CALLERROR frames to its response queue."""
    while True:
        message = await station._response_queue.get()
        if message.unique_id == unique_id:
            return [message.message_type_id, message.unique_id, message.error_code]
