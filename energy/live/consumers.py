"""The dashboard WebSocket door at /ws/live/ (Channels): thin. Subscriptions are resolved by
energy.live.selectors, events arrive through the groups of energy.live.fanout. Close codes and
limits: docs/live.md."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from urllib.parse import parse_qs, urlsplit

import orjson
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import validate_host
from django.utils import timezone

from energy.ingest.frames import FrameError, frame_loads
from energy.live import fanout, relay, selectors
from energy.sockets import (
    CLOSE_FORBIDDEN,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    AuthWaitMixin,
    json_text,
    scope_header,
)
from energy.topology.overlay import TopologyOverlay, topology_overlay_load
from energy.topology.services import TOPOLOGY_CHANGED, topology_push_claim
from joulepoint.tenancy.selectors import organization_for_token, user_organization_ids

logger = logging.getLogger(__name__)

# A watched topology is recomputed and pushed at most this often per site, across all sockets
# and server processes (energy.topology.services.topology_push_claim): readings of a busy site
# arrive many times a second, and the view cannot show more.
TOPOLOGY_PUSH_INTERVAL_SECONDS = 0.25
# A node turns stale this long after its reading's age passes stale_after_seconds, so the
# recompute then sees it strictly past the limit.
TOPOLOGY_STALE_MARGIN_SECONDS = 0.05


class LiveConsumer(AuthWaitMixin, AsyncWebsocketConsumer):
    """A dashboard watching sites, meters or meter groups of its own organization(s).

    Authenticated by the Django session (same-origin browsers) or an OAuth2 access token with
    energy:read, given as `?token=` or in a first message {"type": "auth", "token": "..."}."""

    # No channel of its own: everything reaches this socket through the process's relay
    # (energy.live.relay). Channels would otherwise keep a receive pending on a per-socket
    # channel, which raises when Redis goes away and kills every open socket with it.
    channel_layer_alias = None
    organization_ids: list[int] | None = None
    token_checker: asyncio.Task | None = None

    async def connect(self) -> None:
        self.sites: dict[int, set[int] | None] = {}
        self.topology: dict[int, TopologyOverlay] = {}
        # Per watched site: the scheduled flush (readings arrived since the last update), the
        # loop time of the last update this socket sent, and the timer that re-evaluates
        # staleness when no reading comes.
        self.topology_pending: dict[int, tuple[int, asyncio.TimerHandle]] = {}
        self.topology_flushes = 0  # numbers the scheduled flushes (a superseded one is skipped)
        self.topology_pushed: dict[int, float] = {}
        self.topology_stale_timers: dict[int, asyncio.TimerHandle] = {}
        # Not `groups`: that is Channels' own list, which it leaves on the channel layer itself.
        self.relay_groups: set[str] = set()
        # Messages from this process's relay, written by one task in order; bounded so a slow
        # browser cannot hold the server's memory (it is closed with 4503 instead).
        self.outbox: asyncio.Queue = asyncio.Queue(maxsize=relay.LOCAL_QUEUE_SIZE)
        self.writer = asyncio.ensure_future(self._write_loop())
        await self.accept()
        token = parse_qs(self.scope.get("query_string", b"").decode("latin1")).get("token", [None])[0]
        if token:
            await self.authenticate_token(token)
            return
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            if not self.same_origin():
                await self.refuse(CLOSE_FORBIDDEN, "forbidden", "Session sockets must come from this site's pages.")
                return
            org_ids = await database_sync_to_async(user_organization_ids)(user=user)
            await self.authenticated(org_ids)
            return
        self.start_auth_timer()

    def same_origin(self) -> bool:
        """A session cookie rides along on cross-site sockets too (CSWSH): require our Origin."""
        origin = scope_header(self.scope, b"origin")
        if origin is None:
            return True  # not a browser; a browser always sends Origin on a WebSocket
        parts = urlsplit(origin)
        if not parts.netloc:
            return False
        allowed = [host for host in settings.ALLOWED_HOSTS if host != "*"]
        return parts.netloc == scope_header(self.scope, b"host") or validate_host(parts.hostname or "", allowed)

    async def authenticate_token(self, token: object) -> None:
        token = str(token)
        org_id, why = await database_sync_to_async(organization_for_token)(token=token, scopes=["energy:read"])
        if org_id is None:
            code = CLOSE_FORBIDDEN if why == "insufficient_scope" else CLOSE_UNAUTHENTICATED
            detail = "The token lacks energy:read." if code == CLOSE_FORBIDDEN else "Invalid or expired token."
            await self.refuse(code, why, detail)
            return
        if not await self.authenticated([org_id]):
            return
        # A token can be revoked, expire or lose energy:read while the socket is open: its
        # revocation is announced to this group, and a periodic check catches the rest.
        if not await self.join(fanout.token_group(hashlib.sha256(token.encode()).hexdigest())):
            return
        self.token_checker = asyncio.ensure_future(self._token_recheck_loop(token))

    async def _token_recheck_loop(self, token: str) -> None:
        while True:
            await asyncio.sleep(settings.WS_LIVE_TOKEN_RECHECK_SECONDS)
            try:
                org_id, why = await database_sync_to_async(organization_for_token)(token=token, scopes=["energy:read"])
            except Exception:
                # The database is unreachable: a dashboard is not closed for that; check again later.
                logger.warning("live socket could not re-check its token", exc_info=True)
                continue
            if org_id not in (self.organization_ids or ()):
                await self.token_lost(why or "invalid_token")
                return

    async def token_lost(self, why: str) -> None:
        if why == "insufficient_scope":
            await self.refuse(CLOSE_FORBIDDEN, why, "The token no longer carries energy:read.")
        else:
            await self.refuse(CLOSE_UNAUTHENTICATED, "token_revoked", "The token was revoked or has expired.")

    async def authenticated(self, org_ids: list[int]) -> bool:
        """Join the organizations' groups and say ready; False if the socket was closed instead."""
        if not org_ids:
            await self.refuse(CLOSE_FORBIDDEN, "forbidden", "This user belongs to no organization.")
            return False
        self.stop_auth_timer()
        self.organization_ids = org_ids
        for org_id in org_ids:
            if not await self.join(fanout.org_group(org_id)):
                return False
        await self.reply({"type": "ready", "organizations": org_ids})
        return True

    async def refuse(self, code: int, error: str, detail: str) -> None:
        await self.reply({"type": "error", "code": error, "detail": detail})
        await self.close(code=code)

    async def join(self, group: str) -> bool:
        """Receive `group`'s messages; False (the socket closed with 1013) when the channel layer
        is unreachable, since this socket could then never get them."""
        if group in self.relay_groups:
            return True
        try:
            await relay.relay().add(group, self)
        except relay.ChannelLayerUnavailable as error:
            logger.warning("live socket refused: could not join %s (%s)", group, error)
            await self.refuse(CLOSE_TRY_AGAIN_LATER, "live_unavailable", "Live updates are unavailable; reconnect.")
            return False
        self.relay_groups.add(group)
        return True

    async def disconnect(self, code) -> None:
        self.stop_auth_timer()
        self.writer.cancel()
        if self.token_checker is not None:
            self.token_checker.cancel()
        for handle in [
            *(handle for _n, handle in self.topology_pending.values()),
            *self.topology_stale_timers.values(),
        ]:
            handle.cancel()
        for group in self.relay_groups:
            await relay.relay().discard(group, self)

    def relay_deliver(self, message: dict) -> None:
        """Called by the relay for each message of a group this socket joined."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.outbox = asyncio.Queue(maxsize=1)
            self.outbox.put_nowait({"type": "live.too_slow"})

    async def _write_loop(self) -> None:
        while True:
            message = await self.outbox.get()
            kind = message["type"]
            if kind == "live.readings":
                self.topology_readings(message)
                await self.live_readings(message)
            elif kind == "live.event":
                await self.topology_changed(message)
                await self.live_event(message)
            elif kind == "topology.flush":
                await self.topology_flush(message["site_id"], message["flush"])
            elif kind == "topology.pushed":
                await self.topology_pushed_relay(message)
            elif kind == "topology.stale":
                self.topology_arm(message["site_id"], 0.0)
            elif kind == "live.token_revoked":
                await self.token_lost("invalid_token")
                return
            elif kind == "live.too_slow":
                await self.refuse(CLOSE_TOO_SLOW, "too_slow", "This socket fell behind; reconnect and reload.")
                return

    async def reply(self, frame: dict) -> None:
        await self.send(text_data=json_text(frame))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return
        raw = text_data if text_data is not None else bytes_data
        try:
            data = frame_loads(raw)
        except FrameError as exc:
            await self.reply(exc.as_frame())
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if self.organization_ids is None:
            if kind != "auth":
                await self.refuse(CLOSE_UNAUTHENTICATED, "unauthenticated", "Authenticate first.")
                return
            await self.authenticate_token(data.get("token") or "")
            return
        if kind == "subscribe":
            await self.subscribe(data)
        elif kind == "unsubscribe":
            await self.unsubscribe(data)
        elif kind == "ping":
            await self.reply({"type": "pong"})
        else:
            await self.reply({"type": "error", "code": "unknown_type", "detail": f"Unknown message type {kind!r}."})

    async def subscribe(self, data: dict) -> None:
        if data.get("topology") is not None:
            await self.subscribe_topology(data["topology"])
            if self.closing or not any(data.get(name) for name in ("sites", "meters", "groups")):
                return
        try:
            targets = await database_sync_to_async(selectors.live_targets_resolve)(
                organization_ids=self.organization_ids,
                meters=data.get("meters"),
                groups=data.get("groups"),
                sites=data.get("sites"),
            )
        except ValueError as exc:
            await self.reply({"type": "error", "code": "bad_subscription", "detail": str(exc)})
            return
        if targets.missing:
            # All or nothing, and another tenant's id reads exactly like one that does not exist.
            await self.reply({"type": "error", "code": "not_found", "detail": "Unknown ids.", **targets.missing})
            return
        watched = sum(len(m) if m is not None else 1 for m in self.sites.values())
        if watched + len(targets.sites) > settings.WS_LIVE_MAX_SUBSCRIPTIONS:
            await self.reply({"type": "error", "code": "too_many_subscriptions", "detail": "Subscription limit."})
            return
        for site_id, (org_id, meters) in targets.sites.items():
            current = self.sites.get(site_id, set())
            if meters is None or current is None:
                self.sites[site_id] = None
            else:
                self.sites[site_id] = current | meters
            if not await self.join(fanout.site_group(org_id, site_id)):
                return
        await self.reply({"type": "subscribed", **self.describe()})

    async def subscribe_topology(self, site_ids: object) -> None:
        """Watch sites' graphs: a `topology` frame now, `topology.update` frames as readings
        arrive (at most one per TOPOLOGY_PUSH_INTERVAL_SECONDS), a new `topology` frame when the
        structure changes. All or nothing, like every subscription."""
        if not isinstance(site_ids, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in site_ids):
            await self.reply({"type": "error", "code": "bad_subscription", "detail": "topology is a list of site ids"})
            return
        watched = sum(len(m) if m is not None else 1 for m in self.sites.values()) + len(self.topology)
        if watched + len(site_ids) > settings.WS_LIVE_MAX_SUBSCRIPTIONS:
            await self.reply({"type": "error", "code": "too_many_subscriptions", "detail": "Subscription limit."})
            return
        loaded = {}
        for site_id in dict.fromkeys(site_ids):
            loaded[site_id] = await database_sync_to_async(topology_overlay_load)(
                organization_ids=self.organization_ids, site_id=site_id
            )
        missing = sorted(site_id for site_id, overlay in loaded.items() if overlay is None)
        if missing:
            await self.reply({"type": "error", "code": "not_found", "detail": "Unknown ids.", "topology": missing})
            return
        for site_id, overlay in loaded.items():
            self.topology[site_id] = overlay
            if not await self.join(fanout.site_group(overlay.organization_id, site_id)):
                return
        await self.reply({"type": "subscribed", **self.describe()})
        for overlay in loaded.values():
            await self.topology_send(overlay)

    async def topology_send(self, overlay: TopologyOverlay) -> None:
        document = overlay.document(now=timezone.now())
        await self.reply({"type": "topology", "site_id": overlay.site_id, "graph": document})
        self.topology_stale_arm(overlay)

    def topology_readings(self, message: dict) -> None:
        """Advance a watched graph with a readings frame and schedule its push (throttled)."""
        overlay = self.topology.get(message["site_id"])
        if overlay is None or overlay.meter_ids.isdisjoint(message["meter_ids"]):
            return
        if not overlay.apply(orjson.loads(message["frame"])["readings"]):
            return
        site_id = overlay.site_id
        delay = self.topology_pushed.get(site_id, 0.0) + TOPOLOGY_PUSH_INTERVAL_SECONDS
        self.topology_arm(site_id, max(0.0, delay - asyncio.get_running_loop().time()))

    def topology_arm(self, site_id: int, delay: float) -> None:
        """Flush the site's graph in `delay` seconds, unless a flush is already scheduled."""
        if site_id in self.topology_pending or site_id not in self.topology:
            return
        self.topology_flushes += 1
        message = {"type": "topology.flush", "site_id": site_id, "flush": self.topology_flushes}
        handle = asyncio.get_running_loop().call_later(delay, self.relay_deliver, message)
        self.topology_pending[site_id] = (self.topology_flushes, handle)

    def topology_stale_arm(self, overlay: TopologyOverlay) -> None:
        """Re-evaluate the graph when its next fresh reading turns stale, if no reading comes first."""
        site_id = overlay.site_id
        previous = self.topology_stale_timers.pop(site_id, None)
        if previous is not None:
            previous.cancel()
        left = overlay.next_stale_in(now=timezone.now())
        if left is not None:
            self.topology_stale_timers[site_id] = asyncio.get_running_loop().call_later(
                left + TOPOLOGY_STALE_MARGIN_SECONDS, self.relay_deliver, {"type": "topology.stale", "site_id": site_id}
            )

    async def topology_flush(self, site_id: int, flush: int) -> None:
        """Compute and send the site's update to every socket watching it (in every process),
        if no other socket has done so within the interval; otherwise that socket's update is
        on its way here (topology_pushed_relay). Should it have left before this socket's
        readings reached the other one, this socket tries again next interval."""
        # Skipped when another socket's update arrived after this flush was queued: it carried
        # what this flush was for.
        if self.topology_pending.get(site_id, (None,))[0] != flush:
            return
        del self.topology_pending[site_id]
        overlay = self.topology.get(site_id)
        if overlay is None:
            return
        claiming_since = asyncio.get_running_loop().time()
        claimed = await sync_to_async(topology_push_claim, thread_sensitive=False)(
            site_id=site_id, interval_seconds=TOPOLOGY_PUSH_INTERVAL_SECONDS
        )
        if not claimed:
            # The claimer's update may have arrived while the claim was on its way to Redis (a
            # round trip there, next to nothing on the local-memory cache): it found no flush
            # pending to cancel, so waiting for it again would push a second update, once the
            # claim expires, of what that one already carried.
            if self.topology_pushed.get(site_id, -math.inf) < claiming_since:
                self.topology_arm(site_id, TOPOLOGY_PUSH_INTERVAL_SECONDS)
            return
        frame = json_text({"type": "topology.update", "site_id": site_id, **overlay.update(now=timezone.now())})
        group = fanout.site_group(overlay.organization_id, site_id)
        await relay.relay().layer.group_send(
            group, {"type": "topology.pushed", "group": group, "site_id": site_id, "frame": frame}
        )

    async def topology_pushed_relay(self, message: dict) -> None:
        """A site's update, computed by whichever watching socket claimed the interval."""
        site_id = message["site_id"]
        overlay = self.topology.get(site_id)
        if overlay is None:
            return
        pending = self.topology_pending.pop(site_id, None)
        if pending is not None:
            pending[1].cancel()
        self.topology_pushed[site_id] = asyncio.get_running_loop().time()
        await self.send(text_data=message["frame"])
        self.topology_stale_arm(overlay)

    async def topology_changed(self, message: dict) -> None:
        """A node or edge of a watched site changed: reload its graph and send it whole."""
        event = message["event"]
        site_id = (event.get("payload") or {}).get("site_id")
        if event.get("key") != TOPOLOGY_CHANGED or site_id not in self.topology:
            return
        overlay = await database_sync_to_async(topology_overlay_load)(
            organization_ids=self.organization_ids, site_id=site_id
        )
        if overlay is None:
            del self.topology[site_id]
            return
        self.topology[site_id] = overlay
        await self.topology_send(overlay)

    async def unsubscribe(self, data: dict) -> None:
        topology = data.get("topology")
        for site_id in topology if isinstance(topology, list) else []:
            self.topology.pop(site_id, None)
            pending = self.topology_pending.pop(site_id, None)
            stale_timer = self.topology_stale_timers.pop(site_id, None)
            for handle in (pending[1] if pending else None, stale_timer):
                if handle is not None:
                    handle.cancel()
        sites, meters = data.get("sites") or [], data.get("meters") or []
        for site_id in list(self.sites):
            if site_id in sites:
                del self.sites[site_id]
            elif self.sites[site_id] is not None:
                self.sites[site_id] -= set(meters)
        await self.reply({"type": "subscribed", **self.describe()})

    def describe(self) -> dict:
        described = {
            "sites": sorted(site for site, meters in self.sites.items() if meters is None),
            "meters": sorted(m for meters in self.sites.values() if meters is not None for m in meters),
        }
        if self.topology:  # named only when watched, so frames of sockets that never do are unchanged
            described["topology"] = sorted(self.topology)
        return described

    async def live_readings(self, message: dict) -> None:
        site_id = message["site_id"]
        if site_id not in self.sites:
            return
        meters = self.sites[site_id]
        if meters is None:
            await self.send(text_data=message["frame"])
            return
        if meters.isdisjoint(message["meter_ids"]):
            return
        readings = [r for r in orjson.loads(message["frame"])["readings"] if r.get("meter_id") in meters]
        await self.reply({"type": "readings", "site_id": site_id, "readings": readings})

    async def live_event(self, message: dict) -> None:
        event = message["event"]
        payload = event.get("payload") or {}
        site_id, meter_id = payload.get("site_id"), payload.get("meter_id")
        if site_id is not None:
            if site_id not in self.sites:
                return
            meters = self.sites[site_id]
            if meters is not None and meter_id is not None and meter_id not in meters:
                return
        await self.reply({"type": "event", **event})
