from __future__ import annotations

import pytest
from celery import current_app


@pytest.fixture
def eager_tasks():
    """Celery tasks run in-process in both test modes (with REDIS_URL the suite has a broker)."""
    conf = current_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager, conf.task_eager_propagates = True, True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved
