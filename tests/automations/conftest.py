from __future__ import annotations

import pytest
from celery import current_app
from django.core.cache import cache

from tests import factories
from tests.automations.receiver import Receiver


@pytest.fixture(autouse=True)
def automations_settings(settings):
    """Tests send webhooks to 127.0.0.1; a short retry schedule; a clean cache (throttle keys)."""
    settings.AUTOMATIONS_WEBHOOK_ALLOW_PRIVATE = True
    settings.AUTOMATIONS_RETRY_BASE_SECONDS = 1
    settings.AUTOMATIONS_RETRY_FACTOR = 2
    settings.AUTOMATIONS_RETRY_JITTER = 0.2
    settings.AUTOMATIONS_MAX_ATTEMPTS = 4
    settings.AUTOMATIONS_BREAKER_FAILURES = 3
    settings.AUTOMATIONS_BREAKER_COOLDOWN_SECONDS = 30
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cache.clear()
    yield settings
    cache.clear()


@pytest.fixture
def eager_tasks():
    """Celery tasks run in-process in both test modes (with REDIS_URL the suite has a broker)."""
    conf = current_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def webhook_action(org, receiver):
    return factories.ActionFactory(
        organization=org,
        name="Ops webhook",
        config={
            "url": receiver.url,
            "method": "POST",
            "headers": {"X-Env": "test"},
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "timeout_seconds": 2,
        },
    )


@pytest.fixture
def high_power_rule(org, webhook_action):
    """The seed's HighPower rule (throttle 300 s per meter) with the webhook action."""
    return factories.RuleFactory(
        organization=org,
        name="HighPower",
        throttle_seconds=300,
        dedupe_template="meter:{meter_id}",
        actions=[webhook_action],
    )
