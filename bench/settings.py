"""Bench-only settings: the product settings plus a URLconf with the bare baseline view.

Selected with DJANGO_SETTINGS_MODULE=bench.settings by bench/ingest.py only; the product
URLconf (joulepoint.urls) never carries bench routes.
"""

from joulepoint.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
