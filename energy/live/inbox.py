"""A hand-off from other threads to one asyncio loop, woken once per burst.

The MQTT bridge (paho's network thread → the bridge's loop) and the live fan-out sender
(request and worker threads → the sender's loop) both take items in bursts. Waking a loop from
another thread is a write to its self-pipe, a system call; `loop.call_soon_threadsafe` per item
(what an asyncio.Queue fed from a thread needs) paid that for every message. Here a put wakes
the loop only when no wake-up is pending, so a burst of puts costs one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopInbox(Generic[T]):
    """Items put by any thread, taken in order by the coroutines of `loop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, maxlen: int | None = None) -> None:
        self.loop = loop
        self.maxlen = maxlen
        self.items: deque[T] = deque()
        self.arrived = asyncio.Event()  # bound to `loop` on its first wait
        self.wake_pending = False

    def put(self, item: T) -> bool:
        """From any thread; False (the item is dropped) when `maxlen` items are waiting."""
        if self.maxlen is not None and len(self.items) >= self.maxlen:
            return False
        # Append before looking at the flag, and take() lowers the flag before it takes: an item
        # is either taken after a pending wake-up or finds the flag down and wakes the loop.
        self.items.append(item)
        if not self.wake_pending:
            self.wake_pending = True
            self.loop.call_soon_threadsafe(self.arrived.set)
        return True

    async def take(self, *, limit: int | None = None, timeout: float | None = None) -> list[T]:
        """The items waiting (at most `limit`), once there is at least one; TimeoutError after
        `timeout` seconds without any. May return an empty list after a spurious wake-up."""
        await asyncio.wait_for(self.arrived.wait(), timeout=timeout)
        self.arrived.clear()
        self.wake_pending = False
        taken: list[T] = []
        while self.items and (limit is None or len(taken) < limit):
            taken.append(self.items.popleft())
        if self.items:
            self.arrived.set()  # more than `limit` waiting: the next take() returns at once
        return taken
