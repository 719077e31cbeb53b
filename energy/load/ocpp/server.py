"""The CSMS endpoint: `manage.py ocpp_server` serves ws://HOST:PORT/ocpp/{charging_station_id}
(subprotocol ocpp2.0.1, HTTP Basic auth with the station's password: OCPP security profile 1,
TLS at the proxy). Its own process, on the `websockets` package as the `ocpp` examples use it,
so long-lived charger sockets stay out of the ASGI app (docs/load.md, "OCPP").

Commands out: every `poll_seconds` one query finds the pending `ocpp.<Action>` commands of the
stations connected here; each is taken (pending → delivered, so two processes never both send
it), sent as a CALL with its payload as is, and the CALLRESULT (or CALLERROR, or the timeout) is
recorded on it. A command of a station that is not connected stays pending until it expires.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import signal
from http import HTTPStatus
from urllib.parse import unquote

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connections
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from energy.load import chargers
from energy.load.models import Charger
from energy.load.ocpp import commands
from energy.load.ocpp.batching import MeterValuesBatcher
from energy.load.ocpp.handlers import CallFailed, StationConnection

logger = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
PATH_PREFIX = "/ocpp/"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header, or None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class OcppServer:
    """The stations connected to this process, by charger id, and the loop sending their commands."""

    def __init__(self, *, poll_seconds: float = 1.0, response_timeout: float = 30.0):
        self.poll_seconds = poll_seconds
        self.response_timeout = response_timeout
        self.stations: dict[int, StationConnection] = {}  # charger id → its connection
        self._authenticated: dict[int, Charger] = {}  # id(connection) → charger, until the handler runs
        self._sending: set[asyncio.Task] = set()
        self.batcher = MeterValuesBatcher()

    async def authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        """The handshake: a known station id in the path and its password, else 404 / 401."""
        if not request.path.startswith(PATH_PREFIX):
            return connection.respond(HTTPStatus.NOT_FOUND, "Connect to /ocpp/{charging_station_id}\n")
        station_id = unquote(request.path[len(PATH_PREFIX) :].split("?", 1)[0])
        credentials = basic_credentials(request.headers.get("Authorization"))
        if credentials is None:
            logger.warning("ocpp: %r refused: no Basic credentials (from %s)", station_id, connection.remote_address)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "HTTP Basic authentication required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
            return response
        user, password = credentials
        charger = None
        if user == station_id:  # OCPP: the Basic user is the station's identity
            charger = await database_sync_to_async(chargers.charger_authenticate)(
                charging_station_id=station_id, password=password
            )
        if charger is None:
            logger.warning(
                "ocpp: %r refused: unknown station or bad password (from %s)", station_id, connection.remote_address
            )
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unknown charging station or bad password\n")
        self._authenticated[id(connection)] = charger
        return None

    async def handle(self, connection: ServerConnection) -> None:
        charger = self._authenticated.pop(id(connection), None)
        if charger is None:
            await connection.close(1008, "not authenticated")
            return
        if connection.subprotocol != SUBPROTOCOL:
            logger.warning("ocpp: %s refused: subprotocol %r", charger, connection.subprotocol)
            await connection.close(1002, f"subprotocol {SUBPROTOCOL} required")
            return
        station = StationConnection(charger, connection, response_timeout=self.response_timeout, batcher=self.batcher)
        previous = self.stations.get(charger.pk)
        self.stations[charger.pk] = station
        if previous is not None:
            # A station that reconnects before its old socket timed out: the new socket wins.
            await previous._connection.close(1000, "replaced by a new connection")
        await database_sync_to_async(chargers.charger_presence_set)(charger=charger, online=True)
        logger.info("ocpp: %s connected (organization %s)", charger, charger.organization_id)
        try:
            await station.start()
        except ConnectionClosed:
            pass
        finally:
            if self.stations.get(charger.pk) is station:
                del self.stations[charger.pk]
                await database_sync_to_async(chargers.charger_presence_set)(charger=charger, online=False)
            logger.info("ocpp: %s disconnected", charger)

    async def commands_poll_once(self) -> int:
        """Send the pending commands of the connected stations; returns how many were taken."""
        by_meter = {station.charger.meter_id: station for station in self.stations.values()}
        pending = await database_sync_to_async(commands.ocpp_commands_pending)(meter_ids=set(by_meter))
        taken = 0
        for outgoing in pending:
            if not await database_sync_to_async(commands.ocpp_command_take)(command_id=outgoing.command_id):
                continue
            taken += 1
            task = asyncio.create_task(self.command_send(by_meter[outgoing.meter_id], outgoing))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return taken

    async def command_send(self, station: StationConnection, outgoing: commands.OutgoingCall) -> None:
        ok = None
        try:
            result = await station.call_raw(outgoing.action, outgoing.payload)
        except CallFailed as exc:
            result, ok = exc.result, False
        except ConnectionClosed:
            result, ok = (
                {"error": "ConnectionClosed", "description": "the station disconnected before answering"},
                False,
            )
        logger.info("ocpp: %s %s → %s", station.id, outgoing.action, result)
        answered = database_sync_to_async(commands.ocpp_command_answered)
        await answered(command_id=outgoing.command_id, result=result, ok=ok)

    async def commands_loop(self) -> None:
        while True:
            try:
                await self.commands_poll_once()
            except Exception:
                logger.exception("ocpp: command poll failed; retrying")
            await asyncio.sleep(self.poll_seconds)

    async def serve(self, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
        async with serve(
            self.handle,
            host,
            port,
            subprotocols=[SUBPROTOCOL],
            process_request=self.authenticate,
            ping_interval=60,
            max_size=2**20,
        ) as server:
            poller = asyncio.create_task(self.commands_loop())
            storing = asyncio.create_task(self.batcher.run())
            logger.info("ocpp: serving ws://%s:%s%s{charging_station_id}", host, port, PATH_PREFIX)
            if ready is not None:
                ready.set()
            try:
                await server.serve_forever()
            finally:
                poller.cancel()
                storing.cancel()
                # The ORM's connection lives in the one thread sync_to_async runs in: close it there.
                await sync_to_async(connections.close_all)()


def ocpp_server_run(*, host: str, port: int, poll_seconds: float = 1.0, response_timeout: float = 30.0) -> None:
    """The `manage.py ocpp_server` process: serve until SIGTERM or SIGINT, then close every
    station's socket (each is marked offline as its handler ends)."""
    server = OcppServer(poll_seconds=poll_seconds, response_timeout=response_timeout)

    async def main() -> None:
        serving = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, serving.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await server.serve(host, port)

    asyncio.run(main())
