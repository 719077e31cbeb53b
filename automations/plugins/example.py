"""The example plugin: writes the rendered message to the `joulepoint.automations` log.

Params: `message` (a template over the event, e.g. "meter {meter_id} at {total_power} W") and
`level` (debug, info, warning, error; default info). Copy it to start a plugin of your own.
"""

from __future__ import annotations

import logging

from automations import templating

logger = logging.getLogger("joulepoint.automations")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LogEventPlugin:
    name = "log_event"

    def validate_params(self, params: dict) -> dict:
        message = params.get("message", "{key} for meter {meter_id}")
        if not isinstance(message, str) or not message:
            raise ValueError("message must be a non-empty string template")
        try:
            templating.check(message)
        except templating.TemplateError as exc:
            raise ValueError(f"message: {exc}") from None
        level = params.get("level", "info")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        unknown = set(params) - {"message", "level"}
        if unknown:
            raise ValueError(f"unknown param(s): {', '.join(sorted(unknown))}")
        return {"message": message, "level": level}

    def execute(self, *, params: dict, context: dict, organization_id: int) -> dict:
        text = templating.render(params["message"], context)
        logger.log(LEVELS[params["level"]], "[org %s] %s", organization_id, text)
        return {"logged": text}
