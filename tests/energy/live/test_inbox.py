"""energy.live.inbox: the hand-off from other threads to one loop, woken once per burst."""

from __future__ import annotations

import asyncio
import threading

import pytest

from energy.live.inbox import LoopInbox


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def counted_wake_ups(loop, monkeypatch) -> list:
    """Each cross-thread wake-up of `loop`, recorded."""
    wake_ups = []
    original = loop.call_soon_threadsafe

    def call_soon_threadsafe(callback, *args):
        wake_ups.append(callback)
        return original(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", call_soon_threadsafe)
    return wake_ups


def test_puts_made_before_the_loop_runs_arrive_in_order_after_one_wake_up(loop, monkeypatch):
    inbox = LoopInbox(loop)
    wake_ups = counted_wake_ups(loop, monkeypatch)
    for n in range(100):
        inbox.put(n)
    assert loop.run_until_complete(inbox.take(timeout=5)) == list(range(100))
    assert len(wake_ups) == 1  # one wake-up took all 100


def test_puts_from_another_thread_are_all_taken_in_order(loop):
    inbox = LoopInbox(loop)
    writer = threading.Thread(target=lambda: [inbox.put(n) for n in range(5000)])

    async def take_all() -> list:
        taken: list = []
        while len(taken) < 5000:
            taken += await inbox.take(timeout=5)
        return taken

    writer.start()
    taken = loop.run_until_complete(take_all())
    writer.join()
    assert taken == list(range(5000))


def test_take_returns_at_most_limit_and_the_rest_at_once_next(loop):
    inbox = LoopInbox(loop)
    for n in range(5):
        inbox.put(n)
    assert loop.run_until_complete(inbox.take(limit=3, timeout=5)) == [0, 1, 2]
    assert loop.run_until_complete(inbox.take(limit=3, timeout=0.1)) == [3, 4]


def test_take_times_out_when_nothing_arrives(loop):
    with pytest.raises(TimeoutError):
        loop.run_until_complete(LoopInbox(loop).take(timeout=0.05))


def test_a_full_inbox_drops_what_is_put(loop):
    inbox = LoopInbox(loop, maxlen=2)
    assert [inbox.put(n) for n in range(3)] == [True, True, False]
    assert loop.run_until_complete(inbox.take(timeout=5)) == [0, 1]
