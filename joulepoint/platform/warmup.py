"""What a server process loads once at start rather than on its first requests."""

from __future__ import annotations

import gc

from django.urls import get_resolver

from joulepoint.celery import app


def server_process_warm_up() -> None:
    """Import the URLconf (every view module behind it) and the apps' Celery task modules, then
    freeze what is loaded out of the garbage collector's generations.

    Django imports the URLconf on a process's first request, and services enqueue tasks by
    name (joulepoint.platform.enqueue), which finalizes the Celery app and imports every tasks
    module on first use: otherwise whichever device posts first after a restart of a worker
    pays for both (bench/live.py shows the first bulk POSTs without warm-up).
    """
    get_resolver().url_patterns  # noqa: B018  (the property imports the URLconf)
    # CELERY_IMPORTS and each app's tasks module, as a worker imports them at start.
    app.loader.import_default_modules()
    app.finalize(auto=True)
    # Everything loaded so far lives as long as the process: moved out of the collector's reach,
    # a full collection no longer walks it (a full collection over Django, DRF and the apps
    # stalls every request the process is serving; bench/ingest_pieces.py shows it).
    gc.freeze()
