"""energy.live.fanout: what the Redis sender thread puts on the channel layer."""

from __future__ import annotations

import uuid

import orjson
import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from energy.live import fanout
from tests.net import free_port


def readings(group: str, site_id: int, *meter_ids: int) -> tuple[str, dict]:
    batch = [{"meter_id": meter_id, "site_id": site_id, "total_power": float(meter_id)} for meter_id in meter_ids]
    return group, {"type": "live.readings", "site_id": site_id, "readings": batch, "group": group}


def frame_meters(message: dict) -> list[int]:
    return [reading["meter_id"] for reading in orjson.loads(message["frame"])["readings"]]


def test_back_to_back_batches_of_one_site_leave_as_one_frame_in_order():
    sent = fanout._coalesced(
        [readings("live.o1.s1", 1, 3), readings("live.o1.s1", 1, 1, 2), readings("live.o1.s1", 1, 5)]
    )
    assert len(sent) == 1
    group, message = sent[0]
    assert group == message["group"] == "live.o1.s1"
    assert frame_meters(message) == [3, 1, 2, 5]
    assert message["meter_ids"] == [1, 2, 3, 5]
    assert "readings" not in message  # the wire form carries the frame only


def test_other_sites_and_events_keep_their_place():
    event = ("live.o1.s1", {"type": "live.event", "event": {"key": "pq.event"}, "group": "live.o1.s1"})
    sent = fanout._coalesced(
        [readings("live.o1.s1", 1, 1), readings("live.o2.s9", 9, 7), readings("live.o1.s1", 1, 2), event,
         readings("live.o1.s1", 1, 3)]
    )  # fmt: skip
    assert [(group, message["type"]) for group, message in sent] == [
        ("live.o1.s1", "live.readings"),
        ("live.o2.s9", "live.readings"),
        ("live.o1.s1", "live.readings"),
        ("live.o1.s1", "live.event"),
        ("live.o1.s1", "live.readings"),
    ]
    assert [frame_meters(message) for _, message in sent if message["type"] == "live.readings"] == [[1], [7], [2], [3]]


def test_a_merged_frame_stays_within_the_cap(monkeypatch):
    monkeypatch.setattr(fanout, "COALESCE_MAX_READINGS", 3)
    sent = fanout._coalesced([readings("g", 1, 1, 2), readings("g", 1, 3), readings("g", 1, 4)])
    assert [frame_meters(message) for _, message in sent] == [[1, 2, 3], [4]]


redis_layer_only = pytest.mark.skipif(not settings.REDIS_URL, reason="the membership check is the Redis layer's")


@pytest.fixture
def redis_layer():
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=f"test-{uuid.uuid4().hex}")
    yield layer
    async_to_sync(layer.flush)()


@pytest.fixture
def submitted(monkeypatch):
    """What group_send hands the process's sender thread, instead of handing it over."""
    sent: list[tuple[str, dict]] = []

    class Sender:
        def submit(self, group, message):
            sent.append((group, message))

    monkeypatch.setattr(fanout, "_process_sender", Sender)
    return sent


EVENT = {"type": "live.event", "event": {"key": "pq.event"}}


@redis_layer_only
def test_a_group_with_a_member_is_sent_to_and_an_empty_one_is_not(redis_layer, monkeypatch, submitted):
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: redis_layer)
    channel = async_to_sync(redis_layer.new_channel)()
    async_to_sync(fanout.group_join)(redis_layer, "live.o1.s1", channel)

    fanout.group_send("live.o1.s1", EVENT)
    fanout.group_send("live.o1.s2", EVENT)
    assert [group for group, _ in submitted] == ["live.o1.s1"]

    async_to_sync(fanout.group_leave)(redis_layer, "live.o1.s1", channel)
    fanout.group_send("live.o1.s1", EVENT)
    assert len(submitted) == 1

    async_to_sync(fanout.group_join)(redis_layer, "live.o1.s1", channel)
    fanout.group_send("live.o1.s1", EVENT)
    assert len(submitted) == 2


@redis_layer_only
def test_the_membership_answer_is_kept_until_a_join_or_leave_moves_the_epoch(redis_layer, monkeypatch, submitted):
    """A join through the layer alone (no group_join) is not seen: the process kept "empty"."""
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: redis_layer)
    channel = async_to_sync(redis_layer.new_channel)()
    fanout.group_send("live.o1.s7", EVENT)
    async_to_sync(redis_layer.group_add)("live.o1.s7", channel)
    fanout.group_send("live.o1.s7", EVENT)
    assert submitted == []

    other = async_to_sync(redis_layer.new_channel)()
    async_to_sync(fanout.group_join)(redis_layer, "live.o1.s8", other)  # any group: the epoch is shared
    fanout.group_send("live.o1.s7", EVENT)
    assert [group for group, _ in submitted] == ["live.o1.s7"]


def test_an_unreachable_layer_skips_the_send_without_failing_the_writer(monkeypatch, submitted, caplog):
    port = free_port()  # nothing listens there
    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"])
    monkeypatch.setattr(fanout, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(fanout, "_membership_clients", {})

    fanout.group_send("live.o1.s1", EVENT)
    assert submitted == []
    assert "channel layer unreachable" in caplog.text
