"""`annotate`: write a note on a meter's timeline, shown live on its site's dashboards."""

from __future__ import annotations

from automations import templating
from automations.annotations import annotation_announce
from automations.deliveries.actions.base import (
    ConfigError,
    Handler,
    Outcome,
    config_template,
    context_meter,
    event_time,
    meter_of_org,
    unknown_keys,
)
from automations.models import ActionType, Annotation, Delivery


class AnnotateHandler(Handler):
    type = ActionType.ANNOTATE

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        unknown_keys(errors, config, {"text_template", "meter_id"})
        text = config_template(errors, config, "text_template", required=True)
        meter_id = meter_of_org(errors, config.get("meter_id"), organization)
        if errors:
            raise ConfigError(errors)
        return {"text_template": text, "meter_id": meter_id}

    def render(self, config: dict, context: dict) -> dict:
        return {
            "meter_id": config.get("meter_id") or context.get("meter_id"),
            "text": templating.render(config["text_template"], context)[:1000],
        }

    def execute(self, delivery: Delivery) -> Outcome:
        meter = context_meter(delivery, delivery.payload.get("meter_id"))
        if meter is None:
            return Outcome(
                ok=False, retry=False, error="no meter to annotate: the event names none of this organization"
            )
        annotation, created = Annotation.objects.get_or_create(
            delivery=delivery,
            defaults={
                "organization_id": delivery.organization_id,
                "meter": meter,
                "ts": event_time(delivery),
                "text": delivery.payload["text"],
                "source": "rule",
                "rule_id": delivery.rule_id,
            },
        )
        if created:
            annotation_announce(annotation=annotation)
        return Outcome(ok=True, result={"annotation_id": annotation.pk})
