"""energy.live.relay: an idle channel layer is normal; an outage is logged once, not per retry;
after one the relay joins its groups again (a restarted Redis keeps none)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from energy.live import relay as relay_module


class ScriptedLayer:
    """A channel layer whose receive() raises or returns what the script says, then waits."""

    def __init__(self, script: list, add_failures: list | None = None):
        self.script = list(script)
        self.add_failures = list(add_failures or [])
        self.joined: list[tuple[str, str]] = []

    async def group_add(self, group: str, channel: str) -> None:
        if self.add_failures:
            raise self.add_failures.pop(0)
        self.joined.append((group, channel))

    async def receive(self, channel: str) -> dict:
        if not self.script:
            await asyncio.Event().wait()  # idle forever; the test cancels the task
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


class Member:
    def __init__(self):
        self.delivered: list[dict] = []

    def relay_deliver(self, message: dict) -> None:
        self.delivered.append(message)


async def run_relay(script: list, layer: ScriptedLayer | None = None) -> Member:
    relay = relay_module.Relay.__new__(relay_module.Relay)
    relay.layer = layer or ScriptedLayer(script)
    relay.members = {"live.o1.s1": {member := Member()}}
    relay.channel = "specific.test!relay"
    task = asyncio.ensure_future(relay._run())
    while relay.layer.script:
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return member


def test_receive_timeouts_are_idle_not_errors(caplog):
    message = {"type": "live.readings", "group": "live.o1.s1", "frame": "{}"}
    script = [RedisTimeoutError("Timeout reading from 127.0.0.1:6379"), TimeoutError(), message]
    with caplog.at_level(logging.DEBUG, logger="energy.live.relay"):
        member = asyncio.run(run_relay(script))
    assert member.delivered == [message]
    assert caplog.records == []


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog, monkeypatch):
    monkeypatch.setattr(relay_module, "RETRY_SECONDS", 0)
    message = {"type": "live.readings", "group": "live.o1.s1", "frame": "{}"}
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    with caplog.at_level(logging.DEBUG, logger="energy.live.relay"):
        # The receive fails, then joining again fails twice before Redis answers.
        layer = ScriptedLayer([refused, message], add_failures=[refused, refused])
        member = asyncio.run(run_relay([], layer))
    assert member.delivered == [message]
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("live relay lost the channel layer (ConnectionError: Error 111")
    assert messages[1].startswith("live relay back after")
    assert all(record.exc_info is None for record in caplog.records)  # no traceback


def test_after_an_outage_the_groups_are_joined_again_before_receiving(caplog, monkeypatch):
    monkeypatch.setattr(relay_module, "RETRY_SECONDS", 0)
    message = {"type": "live.readings", "group": "live.o1.s1", "frame": "{}"}
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    # Redis still refuses the first attempt to join again: the relay keeps retrying.
    layer = ScriptedLayer([refused, message], add_failures=[refused])
    with caplog.at_level(logging.WARNING, logger="energy.live.relay"):
        member = asyncio.run(run_relay([], layer))
    assert layer.joined == [("live.o1.s1", "specific.test!relay")]
    assert member.delivered == [message]
    assert [record.getMessage() for record in caplog.records][-1].endswith("1 groups joined again")
