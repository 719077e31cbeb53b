"""Open alerts of sites, for the admin's landing page and the dashboard.

Alerts are automations' rows and energy imports no automations module: automations registers
its reader and its acknowledger here in AutomationsConfig.ready(). Without them (automations not
installed) sites simply have no alerts. Both take the caller's organizations, so a reader never
sees another tenant's alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SiteAlertsProvider:
    # (organization_ids=, site_ids=) -> open alerts, newest first, as dicts with at least id,
    # site_id, severity, status ("active" or "acknowledged"), message and created_at (aware).
    open_alerts: Callable[..., list[dict]]
    # (organization_id=, site_id=, alert_id=, by=) -> the acknowledged alert as such a dict, or
    # None when the alert is not an open alert of that site in that organization.
    acknowledge: Callable[..., dict | None]


_provider: SiteAlertsProvider | None = None


def site_alerts_provider_register(provider: SiteAlertsProvider) -> None:
    global _provider
    _provider = provider


def site_open_alerts(*, organization_ids: Iterable[int], site_ids: Iterable[int]) -> list[dict]:
    if _provider is None:
        return []
    return _provider.open_alerts(organization_ids=list(organization_ids), site_ids=list(site_ids))


def site_alert_acknowledge(*, organization_id: int, site_id: int, alert_id: int, by: str) -> dict | None:
    if _provider is None:
        return None
    return _provider.acknowledge(organization_id=organization_id, site_id=site_id, alert_id=alert_id, by=by)
