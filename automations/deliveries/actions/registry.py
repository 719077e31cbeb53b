"""Action type → handler, and validating an action's config through it."""

from __future__ import annotations

from automations.deliveries.actions.annotate import AnnotateHandler
from automations.deliveries.actions.base import ConfigError, Handler
from automations.deliveries.actions.notify_email import EmailHandler
from automations.deliveries.actions.plugin_action import PluginHandler
from automations.deliveries.actions.relay_command import RelayCommandHandler
from automations.deliveries.actions.wallet_topup import WalletTopupHandler
from automations.deliveries.actions.webhook import WebhookHandler

HANDLERS: dict[str, Handler] = {
    handler.type: handler
    for handler in (
        WebhookHandler(),
        PluginHandler(),
        RelayCommandHandler(),
        EmailHandler(),
        AnnotateHandler(),
        WalletTopupHandler(),
    )
}


def handler_for(action_type: str) -> Handler:
    return HANDLERS[action_type]


def action_config_validate(*, action_type: str, config: dict, organization) -> dict:
    """The action type's clean config, or ConfigError naming each bad key."""
    if not isinstance(config, dict):
        raise ConfigError({"config": "must be an object"})
    return handler_for(action_type).validate(config, organization=organization)
