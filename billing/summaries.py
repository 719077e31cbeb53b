"""What the live dashboard shows of a site's billing accounts (energy.live.account_summaries):
each account's wallet balance and the cost of its current billing cycle so far (month to date
for the usual monthly cycle), from the same preview the API answers."""

from __future__ import annotations

from datetime import datetime

from billing.models import Account
from billing.money import round_money
from billing.preview import RangeInvalid, account_preview


def site_account_summaries(*, organization_id: int, site_id: int, now: datetime) -> list[dict]:
    """The accounts of a site of `organization_id`, by name. Reads only (the preview writes
    nothing)."""
    accounts = (
        Account.objects.for_org(organization_id)
        .filter(site_id=site_id)
        .select_related("site", "tariff", "wallet")
        .order_by("name", "id")
    )
    summaries = []
    for account in accounts[:20]:
        wallet = account.wallet
        try:
            costing = account_preview(account=account, now=now)
        except RangeInvalid:  # the cycle began this instant: nothing to cost yet
            costing = None
        summaries.append(
            {
                "id": account.pk,
                "name": account.name,
                "mode": account.mode,
                "currency": account.tariff.currency,
                "balance": None if wallet is None else str(round_money(wallet.balance, wallet.currency)),
                "low_balance": wallet is not None and wallet.balance < wallet.low_balance_threshold,
                "cycle_start": None if costing is None else costing.start.isoformat(),
                "cycle_cost": "0" if costing is None else str(costing.bill.total),
            }
        )
    return summaries
