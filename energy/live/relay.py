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
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict

from channels.layers import get_channel_layer
from redis.exceptions import TimeoutError as RedisTimeoutError

from energy.live import fanout

logger = logging.getLogger(__name__)

LOCAL_QUEUE_SIZE = 500
RENEW_SECONDS = 3600.0  # channels_redis forgets group members after group_expiry (1 day)
RETRY_SECONDS = 1.0  # between receives while the channel layer is down


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
        await self._start()
        if not self.members[group]:
            await fanout.group_join(self.layer, group, self.channel)
        self.members[group].add(member)

    async def discard(self, group: str, member) -> None:
        members = self.members.get(group)
        if members is None:
            return
        members.discard(member)
        if not members:
            del self.members[group]
            await fanout.group_leave(self.layer, group, self.channel)

    async def _run(self) -> None:
        outage_since: float | None = None
        while True:
            try:
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
            if outage_since is not None:
                logger.warning("live relay receiving again after %.0f s", time.monotonic() - outage_since)
                outage_since = None
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
