"""`plugin_action`: run a registered plugin (automations.plugins) with its params."""

from __future__ import annotations

import time

from automations import plugins
from automations.deliveries.actions.base import (
    ConfigError,
    Handler,
    Outcome,
    template_context_from_delivery,
    unknown_keys,
)
from automations.models import ActionType, Delivery


class PluginHandler(Handler):
    type = ActionType.PLUGIN_ACTION

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        unknown_keys(errors, config, {"plugin", "params"})
        name = config.get("plugin")
        params = config.get("params", {})
        plugin = plugins.plugin_get(name) if isinstance(name, str) else None
        if plugin is None:
            names = ", ".join(sorted(plugins.registry())) or "(none)"
            errors["plugin"] = f"unknown plugin {name!r}; registered: {names}"
        elif not isinstance(params, dict):
            errors["params"] = "must be an object"
        else:
            try:
                params = plugin.validate_params(params)
            except ValueError as exc:
                errors["params"] = str(exc)
        if errors:
            raise ConfigError(errors)
        return {"plugin": name, "params": params}

    def render(self, config: dict, context: dict) -> dict:
        return {"plugin": config["plugin"], "params": config["params"]}

    def execute(self, delivery: Delivery) -> Outcome:
        plugin = plugins.plugin_get(delivery.payload["plugin"])
        if plugin is None:
            return Outcome(ok=False, error=f"plugin {delivery.payload['plugin']!r} is not installed on this worker")
        started = time.perf_counter()
        try:
            result = plugin.execute(
                params=delivery.payload["params"],
                context=template_context_from_delivery(delivery),
                organization_id=delivery.organization_id,
            )
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(ok=True, latency_ms=(time.perf_counter() - started) * 1000, result=result or {})
