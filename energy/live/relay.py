"""One channel-layer membership per server process and group, fanned out to local sockets.

With one Channels group member per dashboard socket, every reading frame is copied into Redis
once per socket and popped once per socket (channels_redis issues 62 and 83: group sends cost
grows with the group, and large groups drop messages at the channel capacity). Here the process
joins each group once, through a relay channel of its own, and hands each message to its local
sockets in memory: Redis traffic per message is one copy per server process, whatever the
number of dashboards.

Each socket has a bounded queue and its own writer task, so one slow browser delays nobody
else; a socket that falls `LOCAL_QUEUE_SIZE` messages behind is told so and closed (4503).
Memberships are renewed well within the channel layer's group expiry.

The process's own `members` are the truth, Redis's group sets a copy of them: a Redis restarted
without persistence comes back with no group at all, so nothing reaches the relay channel
although its receive works again. The receive loop is what notices an outage (its blocking pop
fails as the connection drops), so after one it joins every group of its sockets again before
receiving, retrying until Redis answers; sockets open through the outage then get readings
again without reconnecting. A socket that must join a group while Redis is unreachable cannot
be served and is refused (`ChannelLayerUnavailable`; the consumer closes it with 1013, and the
browser reconnects).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from energy.live import fanout
from joulepoint.events.listeners import listeners_changed

logger = logging.getLogger(__name__)

LOCAL_QUEUE_SIZE = 500
RENEW_SECONDS = 3600.0  # channels_redis forgets group members after group_expiry (1 day)
RETRY_SECONDS = 1.0  # between receives while the channel layer is down


class ChannelLayerUnavailable(Exception):
    """The relay could not join a group for a new member: the channel layer is unreachable."""


class Relay:
    """The process's relay on one event loop (tests run several loops; servers run one)."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.members: dict[str, set] = defaultdict(set)
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.renewer: asyncio.Task | None = None

    async def _start(self) -> None:
        if self.channel is None:
            # The default "specific" prefix: channels_redis receives every process-local channel
            # through one shared pop on "specific.<client>!"; another prefix would starve.
            self.channel = await self.layer.new_channel()
            self.task = asyncio.ensure_future(self._run())
            self.renewer = asyncio.ensure_future(self._renew())

    async def add(self, group: str, member) -> None:
        """Deliver `group`'s messages to `member`; raises ChannelLayerUnavailable (nothing
        recorded) when the group must be joined and Redis does not answer."""
        await self._start()
        if not self.members.get(group):
            try:
                await fanout.group_join(self.layer, group, self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                raise ChannelLayerUnavailable(f"{type(error).__name__}: {error}") from error
        self.members[group].add(member)

    async def discard(self, group: str, member) -> None:
        members = self.members.get(group)
        if members is None:
            return
        members.discard(member)
        if not members:
            del self.members[group]
            try:
                await fanout.group_leave(self.layer, group, self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The membership then lapses with Redis (a restart) or the group expiry; messages
                # meanwhile find no local member and are dropped here.
                logger.warning("live relay could not leave %s (%s: %s)", group, type(error).__name__, error)

    async def _rejoin(self) -> int:
        """Join every group this process has members in (again): after an outage Redis may
        have come back empty. Raises while Redis still does not answer."""
        groups = [group for group, members in self.members.items() if members]
        for group in groups:
            await self.layer.group_add(group, self.channel)
        await sync_to_async(listeners_changed, thread_sensitive=False)()
        return len(groups)

    async def _run(self) -> None:
        outage_since: float | None = None
        while True:
            try:
                if outage_since is not None:
                    rejoined = await self._rejoin()
                    logger.warning(
                        "live relay back after %.0f s; %d groups joined again",
                        time.monotonic() - outage_since,
                        rejoined,
                    )
                    outage_since = None
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisTimeoutError):
                # Nothing arrived within a read timeout: an idle relay, not a failure (the
                # settings make the layer's read timeout outlast its blocking pop; this covers a
                # deployment that configures a shorter one). Receive again, quietly.
                continue
            except Exception as error:
                # A real outage (Redis down, connection refused): one warning when it starts and
                # one when it ends, not a traceback per retry.
                if outage_since is None:
                    outage_since = time.monotonic()
                    logger.warning(
                        "live relay lost the channel layer (%s: %s); retrying every %s s",
                        type(error).__name__,
                        error,
                        RETRY_SECONDS,
                    )
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for member in list(self.members.get(message.get("group", ""), ())):
                member.relay_deliver(message)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for group in list(self.members):
                try:
                    await self.layer.group_add(group, self.channel)
                except Exception:
                    logger.exception("live relay could not renew %s", group)


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Relay] = weakref.WeakKeyDictionary()


def relay() -> Relay:
    loop = asyncio.get_running_loop()
    instance = _relays.get(loop)
    if instance is None:
        instance = _relays[loop] = Relay()
    return instance
