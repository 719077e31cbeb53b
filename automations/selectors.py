"""Reads of automations rows: for the engine, the API and other apps (annotations in energy's
analytics). Every query goes through `for_org`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from automations.models import Alert, Annotation, CircuitBreaker, Delivery, Rule

ANNOTATION_FIELDS = ("id", "meter_id", "ts", "text", "source", "rule_id")
SITE_ALERT_FIELDS = ("id", "site_id", "meter_id", "severity", "status", "message", "created_at", "occurrences")
OPEN_ALERT_STATUSES = (Alert.Status.ACTIVE, Alert.Status.ACKNOWLEDGED)


def site_open_alerts(*, organization_ids: Iterable[int], site_ids: Iterable[int], limit: int = 200) -> list[dict]:
    """Open (active or acknowledged, not cleared) alerts of these sites, newest first: for the
    admin's landing page and the dashboard (energy.live.site_alerts)."""
    return list(
        Alert.objects.for_orgs(list(organization_ids))
        .filter(site_id__in=list(site_ids), status__in=OPEN_ALERT_STATUSES)
        .order_by("-created_at", "-id")
        .values(*SITE_ALERT_FIELDS)[:limit]
    )


def annotations_for_meters(
    *, organization_id: int, meter_ids: Iterable[int], start: datetime, end: datetime, limit: int
) -> list[dict]:
    """The organization's annotations on these meters with start <= ts < end, oldest first, at
    most `limit`. Meters of another organization simply match nothing (the filter is by org)."""
    return list(
        Annotation.objects.for_org(organization_id)
        .filter(meter_id__in=list(meter_ids), ts__gte=start, ts__lt=end)
        .order_by("ts", "id")
        .values(*ANNOTATION_FIELDS)[:limit]
    )


def active_rules(*, organization_id: int, event_key: str) -> list[Rule]:
    return list(
        Rule.objects.for_org(organization_id)
        .filter(event_key=event_key, is_active=True)
        .prefetch_related("rule_actions__action")
        .order_by("id")
    )


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return round(values[index], 2)


def deliveries_metrics(*, organization_id: int, since: datetime | None = None) -> dict:
    """Counts by status, success rate and p50/p95 latency, overall and per action, plus every
    endpoint's breaker state."""
    rows = Delivery.objects.for_org(organization_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    data = list(rows.values_list("action_id", "action__name", "action_type", "status", "latency_ms"))

    def block(items) -> dict:
        counts = {status: 0 for status in Delivery.Status.values}
        latencies = []
        for *_ignored, status, latency in items:
            counts[status] += 1
            if latency is not None:
                latencies.append(latency)
        finished = counts["succeeded"] + counts["dead"]
        return {
            "total": len(items),
            "by_status": counts,
            "success_rate": round(counts["succeeded"] / finished, 4) if finished else None,
            "latency_ms_p50": _percentile(latencies, 0.50),
            "latency_ms_p95": _percentile(latencies, 0.95),
        }

    per_action: dict[Any, list] = {}
    for row in data:
        per_action.setdefault((row[0], row[1], row[2]), []).append(row)
    breakers = CircuitBreaker.objects.for_org(organization_id).order_by("endpoint")
    return {
        "overall": block(data),
        "actions": [
            {"action_id": key[0], "name": key[1], "type": key[2], **block(items)}
            for key, items in sorted(per_action.items(), key=lambda item: (item[0][0] is None, item[0][0] or 0))
        ],
        "breakers": [
            {
                "endpoint": b.endpoint,
                "state": b.state,
                "consecutive_failures": b.consecutive_failures,
                "opened_at": b.opened_at,
                "retry_at": b.retry_at,
            }
            for b in breakers
        ],
    }
