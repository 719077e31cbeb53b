"""joulepoint.events.listeners: answers kept per process while the listeners' epoch stands."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from automations.engine import cache as rule_cache
from automations.engine.rules import rule_save
from energy.events import DATA_INGESTED
from joulepoint.events import listeners
from joulepoint.events.services import event_publish_many, subscribe, unsubscribe
from tests import factories


class LookUp:
    """A look-up that counts its calls and answers what it is told."""

    def __init__(self, answer: bool = False) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.answer


def test_an_answer_is_looked_up_once_while_the_epoch_stands():
    look_up = LookUp(answer=True)
    assert listeners.listener_answer("q", look_up) is True
    assert listeners.listener_answer("q", look_up) is True
    assert look_up.calls == 1


def test_a_change_of_listeners_drops_every_kept_answer():
    first, second = LookUp(), LookUp()
    listeners.listener_answer("first", first)
    listeners.listener_answer("second", second)
    first.answer = True

    listeners.listeners_changed()

    assert listeners.listener_answer("first", first) is True
    listeners.listener_answer("second", second)
    assert (first.calls, second.calls) == (2, 2)


def test_an_answer_looked_up_while_the_listeners_changed_is_not_kept():
    """The look-up may have read the state before the change: the next caller looks again."""
    look_up = LookUp()

    def changing() -> bool:
        answer = look_up()
        listeners.listeners_changed()
        listeners.listeners_epoch_observe()  # another thread of this process saw the new epoch
        return answer

    listeners.listener_answer("q", changing)
    listeners.listener_answer("q", look_up)
    assert look_up.calls == 2


def test_an_epoch_lost_with_the_cache_drops_the_answers():
    look_up = LookUp()
    listeners.listener_answer("q", look_up)
    cache.clear()  # a cache restart: the epoch is gone, and comes back as a new value
    listeners.listener_answer("q", look_up)
    assert look_up.calls == 2


def test_answers_age_out(monkeypatch):
    look_up = LookUp()
    listeners.listener_answer("q", look_up)
    monkeypatch.setattr(listeners, "MAX_AGE_SECONDS", 0.0)
    listeners.listener_answer("q", look_up)
    assert look_up.calls == 2


def test_a_look_up_that_fails_keeps_nothing():
    def failing() -> bool:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        listeners.listener_answer("q", failing)
    look_up = LookUp(answer=True)
    assert listeners.listener_answer("q", look_up) is True


def epoch_reads(monkeypatch) -> list[str]:
    """The epoch's reads of its own (cache.get), as they happen."""
    reads: list[str] = []
    cache_get = cache.get

    def counting_get(key, *args, **kwargs):
        if key == listeners.EPOCH_KEY:
            reads.append(key)
        return cache_get(key, *args, **kwargs)

    monkeypatch.setattr(cache, "get", counting_get)
    return reads


@pytest.mark.django_db(transaction=True)
def test_one_fan_out_reads_the_epoch_once_whatever_it_asks(monkeypatch, org):
    reads = epoch_reads(monkeypatch)
    answers: list[bool] = []

    def subscriber(event) -> None:
        answers.append(listeners.listener_answer(("a", event.payload["n"]), LookUp()))
        answers.append(listeners.listener_answer(("b", event.payload["n"]), LookUp()))

    subscribe(subscriber, keys=[DATA_INGESTED])
    try:
        with transaction.atomic():
            event_publish_many(events=[(org.pk, DATA_INGESTED, {"n": n}, None) for n in range(3)], source="test")
    finally:
        unsubscribe(subscriber)
    assert len(answers) == 6
    assert len(reads) == 1


@pytest.mark.django_db
def test_a_rule_saved_is_seen_by_the_next_check(org):
    """(Across server processes: tests/e2e/test_listeners_e2e.py.)"""
    assert rule_cache.rules_exist(organization_id=org.pk, event_key=DATA_INGESTED) is False
    rule = factories.RuleFactory.build(organization=org, event_key=DATA_INGESTED)
    rule_save(rule=rule, action_ids=None)
    assert rule_cache.rules_exist(organization_id=org.pk, event_key=DATA_INGESTED) is True


@pytest.mark.skipif(not settings.REDIS_URL, reason="a device request reads the epoch in its Redis round trip")
@pytest.mark.django_db(transaction=True)
def test_a_device_request_reads_the_epoch_with_its_key_and_its_fan_out_reads_none(monkeypatch, meter, device_client):
    reads = epoch_reads(monkeypatch)
    checks: list[bool] = []
    rules_exist = rule_cache.rules_exist

    def counted_rules_exist(**kwargs) -> bool:
        checks.append(rules_exist(**kwargs))
        return checks[-1]

    monkeypatch.setattr(rule_cache, "rules_exist", counted_rules_exist)
    response = device_client(meter).post(
        "/api/energy/energy-data/", {"timestamp": "2026-01-01T00:00:00Z", "total_power": 1.0}
    )
    assert response.status_code == 201
    assert checks == [False]  # the fan-out asked
    assert reads == []  # ...and read no epoch of its own

    # Outside that request, a check reads the epoch again.
    listeners.listener_answer("q", LookUp())
    assert len(reads) == 1
