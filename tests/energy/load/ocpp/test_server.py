"""The OCPP server in this process against simulated stations over real sockets: the handshake,
every handler, commands out with their results, schema errors and tenant isolation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from energy.downlink import services as downlink
from energy.load.models import Charger, ChargingSession, Evse
from energy.load.ocpp.server import OcppServer
from energy.load.ocpp.simulator import SimulatedStation, station_connect
from energy.models import DeviceCommand, Reading
from tests import factories
from tests.net import free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@contextlib.asynccontextmanager
async def ocpp_server(**kwargs):
    server = OcppServer(poll_seconds=0.1, **kwargs)
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve("127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield server, f"ws://127.0.0.1:{port}/ocpp"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def station(url: str, charger: Charger, password: str = factories.STATION_PASSWORD, **kwargs):
    connection = await station_connect(url, charger.charging_station_id, password)
    cp = SimulatedStation(charger.charging_station_id, connection, start_energy_kwh=100.0, **kwargs)
    reader = asyncio.create_task(cp.start())
    try:
        yield cp
    finally:
        reader.cancel()
        await connection.close()
        with contextlib.suppress(BaseException):
            await reader


async def eventually(check, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await sync_to_async(check)()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def charger(db):
    return factories.ChargerFactory(max_current_a=32)


async def test_boot_status_authorize_transaction_and_meter_values(charger):
    token = await sync_to_async(factories.IdTokenFactory)(organization=charger.organization, id_token="CARD-1")
    async with ocpp_server() as (_server, url), station(url, charger, id_token=token.id_token) as cp:
        boot = await cp.boot()
        assert boot.status == "Accepted" and boot.interval > 0
        await cp.call(__import__("ocpp.v201.call", fromlist=["Heartbeat"]).Heartbeat())
        assert await cp.authorize() == "Accepted"
        assert await cp.authorize("NOT-ON-THE-LIST") == "Invalid"
        started = await cp.transaction_start()
        assert started.id_token_info["status"] == "Accepted"
        cp.register_wh += 1500  # 1.5 kWh later
        await cp.meter_values()

        fresh = await sync_to_async(Charger.objects.get)(pk=charger.pk)
        assert fresh.is_online and fresh.vendor == "Joulepoint" and fresh.model == "Simulated AC 22"
        evse = await sync_to_async(Evse.objects.get)(charger=charger, evse_id=1, connector_id=1)
        assert evse.status == "Occupied"
        session = await sync_to_async(ChargingSession.objects.get)(charger=charger)
        assert session.state == "active" and session.source == "ocpp" and session.transaction_id == cp.transaction_id
        assert session.meter_start_kwh == pytest.approx(100.0, abs=0.01)
        assert session.energy_delivered_kwh == pytest.approx(1.5, abs=0.05)
        readings = await sync_to_async(list)(Reading.objects.filter(meter_id=charger.meter_id).order_by("ts"))
        assert len(readings) == 2
        last = readings[-1]
        assert last.total_power == pytest.approx(32 * 230 * 3)
        assert last.current_a == pytest.approx(32) and last.voltage_c == pytest.approx(230)
        assert last.total_energy == pytest.approx(101.5, abs=0.05)

        await cp.transaction_stop()
        session = await sync_to_async(ChargingSession.objects.get)(charger=charger)
        assert session.state == "ended" and session.stop_reason == "Local" and session.ended_at is not None
    await eventually(lambda: not Charger.objects.get(pk=charger.pk).is_online)


async def test_commands_go_out_as_calls_and_their_results_are_recorded(charger):
    async with ocpp_server() as (_server, url), station(url, charger) as cp:
        await cp.boot()
        await cp.transaction_start()
        payload = {
            "evseId": 1,
            "chargingProfile": {
                "id": 7,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Absolute",
                "transactionId": cp.transaction_id,
                "chargingSchedule": [
                    {
                        "id": 1,
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0, "numberPhases": 3}],
                    }
                ],
            },
        }
        command = await sync_to_async(downlink.device_command_send)(
            device=charger.meter, name="ocpp.SetChargingProfile", payload=payload
        )
        done = await eventually(lambda: DeviceCommand.objects.filter(pk=command.pk, status="acked").first())
        assert done.channel == "ocpp" and done.result == {"status": "Accepted"}
        assert cp.limit_a == 10.0
        assert cp.received[-1][0] == "SetChargingProfile"
        stop = await sync_to_async(downlink.device_command_send)(
            device=charger.meter, name="ocpp.RequestStopTransaction", payload={"transactionId": "not-mine"}
        )
        rejected = await eventually(lambda: DeviceCommand.objects.filter(pk=stop.pk, status="failed").first())
        assert rejected.result == {"status": "Rejected"}
        # A body that fails the schema never leaves: failed with the validation error.
        bad = await sync_to_async(downlink.device_command_send)(
            device=charger.meter, name="ocpp.Reset", payload={"type": "Sometime"}
        )
        failed = await eventually(lambda: DeviceCommand.objects.filter(pk=bad.pk, status="failed").first())
        assert failed.result["error"] == "FormatViolationError"


async def test_commands_of_offline_stations_stay_pending(charger):
    async with ocpp_server():
        command = await sync_to_async(downlink.device_command_send)(
            device=charger.meter, name="ocpp.Reset", payload={"type": "Immediate"}
        )
        await asyncio.sleep(0.5)
        fresh = await sync_to_async(DeviceCommand.objects.get)(pk=command.pk)
        assert fresh.status == "pending"


async def test_bad_password_and_unknown_station_are_refused(charger):
    async with ocpp_server() as (_server, url):
        with pytest.raises(InvalidStatus) as refused:
            await station_connect(url, charger.charging_station_id, "wrong-password-000000")
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as unknown:
            await station_connect(url, "NO-SUCH-STATION", factories.STATION_PASSWORD)
        assert unknown.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as anonymous:
            await connect(f"{url}/{charger.charging_station_id}", subprotocols=["ocpp2.0.1"])
        assert anonymous.value.response.status_code == 401
    assert not (await sync_to_async(Charger.objects.get)(pk=charger.pk)).is_online


async def test_schema_invalid_message_is_a_format_violation_and_the_connection_stays(charger):
    bad = {"timestamp": "x", "connectorStatus": "Dancing", "evseId": 1, "connectorId": 1}
    async with (
        ocpp_server() as (_server, url),
        await station_connect(url, charger.charging_station_id, factories.STATION_PASSWORD) as ws,
    ):
        await ws.send(json.dumps([2, "bad-1", "StatusNotification", bad]))
        answer = json.loads(await ws.recv())
        assert answer[:3] == [4, "bad-1", "FormatViolation"]
        await ws.send("this is not json")
        assert json.loads(await ws.recv())[2] == "RpcFrameworkError"
        await ws.send(json.dumps([2, "ok-1", "Heartbeat", {}]))
        answer = json.loads(await ws.recv())
        assert answer[0] == 3 and answer[1] == "ok-1" and "currentTime" in answer[2]


async def test_a_station_only_touches_its_own_organization(charger):
    """The other tenant's token is Invalid here, and everything lands under the charger's org."""
    outsider_token = await sync_to_async(factories.IdTokenFactory)(id_token="OUTSIDER-CARD")
    outsider_charger = await sync_to_async(factories.ChargerFactory)(organization=outsider_token.organization)
    assert outsider_charger.organization_id != charger.organization_id
    async with ocpp_server() as (_server, url), station(url, charger, id_token="OUTSIDER-CARD") as cp:
        await cp.boot()
        assert await cp.authorize() == "Invalid"
        started = await cp.transaction_start()
        assert started.id_token_info["status"] == "Invalid"
        await cp.meter_values()
    sessions = await sync_to_async(list)(ChargingSession.objects.all())
    assert [(s.charger_id, s.organization_id) for s in sessions] == [(charger.pk, charger.organization_id)]
    owners = await sync_to_async(set)(Reading.objects.values_list("meter__organization_id", flat=True))
    assert owners == {charger.organization_id}
    assert not await sync_to_async(Evse.objects.filter(charger=outsider_charger).exists)()


async def test_api_requested_session_is_matched_by_remote_start_id(charger):
    from energy.load import sessions

    async with ocpp_server() as (_server, url), station(url, charger) as cp:
        await cp.boot()
        await eventually(lambda: Charger.objects.get(pk=charger.pk).is_online)
        fresh = await sync_to_async(Charger.objects.get)(pk=charger.pk)
        session, command = await sync_to_async(sessions.session_request)(
            charger=fresh, energy_wanted_kwh=20, departure_at=timezone.now() + timedelta(hours=3)
        )
        await eventually(lambda: DeviceCommand.objects.filter(pk=command.pk, status="acked").exists())
        opened = await eventually(
            lambda: ChargingSession.objects.filter(pk=session.pk, state="active", transaction_id__isnull=False).first()
        )
        assert opened.transaction_id == cp.transaction_id and opened.source == "api"
        assert await sync_to_async(ChargingSession.objects.count)() == 1
        stop = await sync_to_async(sessions.session_stop_request)(session=opened)
        await eventually(lambda: DeviceCommand.objects.filter(pk=stop.pk, status="acked").exists())
        ended = await eventually(lambda: ChargingSession.objects.filter(pk=session.pk, state="ended").first())
        assert ended.stop_reason == "Remote"


def _database_connection_killed() -> None:
    """What a PostgreSQL restart does to the server's connection (its ORM thread is this one)."""
    with contextlib.suppress(OperationalError), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a backend PostgreSQL can terminate")
async def test_the_server_reconnects_after_its_database_connection_dies(charger):
    async with ocpp_server() as (_server, url), station(url, charger) as cp:
        await cp.boot()
        await sync_to_async(_database_connection_killed)()

        await cp.call(__import__("ocpp.v201.call", fromlist=["Heartbeat"]).Heartbeat())

        seen = await sync_to_async(Charger.objects.values_list("last_seen_at", flat=True).get)(pk=charger.pk)
        assert timezone.now() - seen < timedelta(seconds=5)
