"""Plugin registry for the `plugin_action` action type.

A plugin is a class with a `name`, `validate_params(params) -> params` (raise ValueError with a
message to refuse) and `execute(*, params, context, organization_id) -> dict`. Plugins register by
dotted path in `settings.AUTOMATIONS_PLUGINS` or by a Python entry point in the group
`joulepoint.automations.plugins` (pyproject.toml of the package that ships them).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import metadata
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "joulepoint.automations.plugins"


class Plugin(Protocol):
    name: str

    def validate_params(self, params: dict) -> dict: ...

    def execute(self, *, params: dict, context: dict, organization_id: int) -> dict: ...


@lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    """name → plugin instance, from the settings list and then the entry-point group."""
    plugins: dict[str, Any] = {}
    for path in settings.AUTOMATIONS_PLUGINS:
        plugin = import_string(path)()
        plugins[plugin.name] = plugin
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry_point.load()()
        except Exception:
            logger.exception("automations plugin entry point %s failed to load", entry_point.name)
            continue
        plugins.setdefault(plugin.name, plugin)
    return plugins


def plugin_get(name: str) -> Any | None:
    return registry().get(name)
