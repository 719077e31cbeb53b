"""Billing accounts of a site, for the dashboard: balance and cost of the cycle so far.

Accounts are billing's rows and energy imports no billing module: billing registers its reader
here in BillingConfig.ready(). Without it (billing not installed) sites simply show no accounts.
The reader takes the site's organization, so it never reads another tenant's accounts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

# (organization_id=, site_id=, now=) -> the site's accounts as JSON-ready dicts: id, name, mode
# ("prepaid"/"postpaid"), currency, balance (decimal string, prepaid only, else None),
# cycle_start (ISO 8601) and cycle_cost (decimal string: the cycle's cost up to `now`).
SiteAccountsReader = Callable[..., list[dict]]
_reader: SiteAccountsReader | None = None


def account_summaries_reader_register(reader: SiteAccountsReader) -> None:
    global _reader
    _reader = reader


def site_accounts(*, organization_id: int, site_id: int, now: datetime) -> list[dict]:
    if _reader is None:
        return []
    return _reader(organization_id=organization_id, site_id=site_id, now=now)
