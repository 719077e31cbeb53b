"""`notify_email`: send a rendered e-mail to a fixed list of recipients."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email

from automations import templating
from automations.deliveries.actions.base import ConfigError, Handler, Outcome, config_template, unknown_keys
from automations.models import ActionType, Delivery


class EmailHandler(Handler):
    type = ActionType.NOTIFY_EMAIL

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        unknown_keys(errors, config, {"recipients", "subject_template", "body_template"})
        recipients = config.get("recipients")
        if not isinstance(recipients, list) or not recipients or len(recipients) > 50:
            errors["recipients"] = "a list of 1 to 50 e-mail addresses"
        else:
            for address in recipients:
                try:
                    if not isinstance(address, str):
                        raise TypeError
                    validate_email(address)
                except (DjangoValidationError, TypeError):
                    errors["recipients"] = f"{address!r} is not an e-mail address"
        subject = config_template(errors, config, "subject_template", required=True)
        body = config_template(errors, config, "body_template", default="{key} for meter {meter_id}")
        if errors:
            raise ConfigError(errors)
        return {"recipients": recipients, "subject_template": subject, "body_template": body}

    def render(self, config: dict, context: dict) -> dict:
        subject = templating.render(config["subject_template"], context).replace("\n", " ")[:200]
        return {
            "recipients": config["recipients"],
            "subject": subject,
            "body": templating.render(config["body_template"], context),
        }

    def execute(self, delivery: Delivery) -> Outcome:
        payload = delivery.payload
        started = time.perf_counter()
        try:
            sent = send_mail(payload["subject"], payload["body"], None, payload["recipients"])
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(ok=True, latency_ms=(time.perf_counter() - started) * 1000, result={"sent": sent})
