"""Alerts: raised by a firing rule (one open alert per rule and subject), acknowledged and cleared
by people. A new alert publishes `alert.triggered`, which rules may chain on."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from automations import templating
from automations.models import Alert, Rule, Severity
from energy.models import Meter, Site
from joulepoint.events import publish

logger = logging.getLogger(__name__)

ALERT_TRIGGERED = "alert.triggered"  # registered in AutomationsConfig.ready()


def _open_alert_bump(*, rule: Rule, subject: str, sub_id: str) -> bool:
    """Count a firing on the open (active or acknowledged) alert of this rule and subject, if
    there is one; the same firing seen twice counts once."""
    open_alert = (
        Alert.objects.for_org(rule.organization_id)
        .select_for_update()
        .filter(rule=rule, subject=subject, status__in=Alert.OPEN_STATUSES)
        .first()
    )
    if open_alert is None:
        return False
    if open_alert.event_id != sub_id:
        open_alert.occurrences += 1
        open_alert.last_seen_at = timezone.now()
        open_alert.save(update_fields=["occurrences", "last_seen_at"])
    return True


def alert_raise(*, rule: Rule, event_key: str, sub_id: str, event: dict, subject: str) -> Alert | None:
    """Open an alert (and publish `alert.triggered`), or bump the open one for (rule, subject).
    Chains stop at AUTOMATIONS_MAX_CHAIN_DEPTH: an alert raised deeper is not published."""
    chain = list(event.get("chain") or []) if event_key == ALERT_TRIGGERED else []
    chain.append(rule.pk)
    message = templating.render(
        rule.alert_message_template, templating.template_context(event, templating.rule_ref(rule))
    )
    meter_id = event.get("meter_id") if isinstance(event.get("meter_id"), int) else None
    site_id = event.get("site_id") if isinstance(event.get("site_id"), int) else None
    if meter_id and not Meter.objects.for_org(rule.organization_id).filter(pk=meter_id).exists():
        meter_id = None
    if site_id and not Site.objects.for_org(rule.organization_id).filter(pk=site_id).exists():
        site_id = None
    if _open_alert_bump(rule=rule, subject=subject, sub_id=sub_id):
        return None
    if Alert.objects.filter(organization_id=rule.organization_id, rule=rule, event_id=sub_id).exists():
        return None  # this firing already raised (and maybe cleared) its alert
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                organization_id=rule.organization_id,
                rule=rule,
                severity=rule.alert_severity or Severity.WARNING,
                subject=subject,
                meter_id=meter_id,
                site_id=site_id,
                message=message[:500],
                event_id=sub_id,
                event_key=event_key,
                event=event,
            )
    except IntegrityError:
        # Another worker opened one for this rule and subject since we looked (the constraint
        # alert_one_open_per_rule_subject): this firing is an occurrence of that alert.
        _open_alert_bump(rule=rule, subject=subject, sub_id=sub_id)
        return None
    if len(chain) > settings.AUTOMATIONS_MAX_CHAIN_DEPTH:
        logger.warning("alert chain %s reached the maximum depth; alert %s not published", chain, alert.pk)
        return alert
    publish(
        rule.organization_id,
        ALERT_TRIGGERED,
        {
            "alert_id": alert.pk,
            "severity": alert.severity,
            "status": alert.status,
            "subject": subject,
            "message": alert.message,
            "rule_id": rule.pk,
            "rule_name": rule.name,
            "meter_id": meter_id,
            "site_id": site_id,
            "source_event_key": event_key,
            "source_event_id": sub_id,
            "chain": chain,
        },
        source="automations",
    )
    return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: str) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status == Alert.Status.ACTIVE:
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = by[:200]
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
    return alert


def alert_acknowledge_on_site(*, organization_id: int, site_id: int, alert_id: int, by: str) -> dict | None:
    """Acknowledge an open alert of this site and organization (the dashboard's button, through
    energy.live.site_alerts); None when there is no such alert."""
    alert = (
        Alert.objects.for_org(organization_id)
        .filter(pk=alert_id, site_id=site_id, status__in=(Alert.Status.ACTIVE, Alert.Status.ACKNOWLEDGED))
        .first()
    )
    if alert is None:
        return None
    alert = alert_acknowledge(alert=alert, by=by)
    return {
        "id": alert.pk,
        "site_id": alert.site_id,
        "meter_id": alert.meter_id,
        "severity": alert.severity,
        "status": alert.status,
        "message": alert.message,
        "created_at": alert.created_at,
        "occurrences": alert.occurrences,
    }


@transaction.atomic
def alert_clear(*, alert: Alert, by: str) -> Alert:
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != Alert.Status.CLEARED:
        alert.status = Alert.Status.CLEARED
        alert.cleared_at = timezone.now()
        alert.cleared_by = by[:200]
        alert.save(update_fields=["status", "cleared_at", "cleared_by"])
    return alert
