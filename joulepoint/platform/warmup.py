"""What a server process loads once at start rather than on its first requests."""

from __future__ import annotations

import gc

from django.urls import get_resolver


def server_process_warm_up() -> None:
    """Import the URLconf (every view module behind it) and the apps' Celery task modules, then
    freeze what is loaded out of the garbage collector's generations.

    Django imports the URLconf on a process's first request, and the ingest path imports task
    modules on first use (they import the services, so the services import them lazily): about
    100 ms here, paid by whichever device posted first after every restart of every worker
    (bench/live.py measured its first bulk POSTs at ~0.6 s against ~13 ms after).
    """
    from joulepoint.celery import app

    get_resolver().url_patterns  # noqa: B018  (the property imports the URLconf)
    # CELERY_IMPORTS and each app's tasks module, as a worker imports them at start.
    app.loader.import_default_modules()
    app.finalize(auto=True)
    # Everything loaded so far lives as long as the process: moved out of the collector's reach,
    # a full collection no longer walks it. One walked Django, DRF and the apps for ~100 ms
    # here (bench/ingest_pieces.py), a stall of every request the process was serving.
    gc.freeze()
