"""Billing's part of `make run`'s demo (registered with energy.demo.demo_extension_register):
a two-rate tariff with a holiday calendar, a prepaid account on the demo's grid meter with a
wallet just above its low-balance threshold, so the first prepaid debits cross it within
minutes and `wallet.low_balance` is published. Idempotent, like demo_ensure.

The top-up rule (`wallet.low_balance` → a `wallet_topup` action) is created by automations'
part of the demo (automations.demo), which asks `billing_demo_topup` what to top up: billing
does not import automations (it stays usable without it).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing.models import Account, Tariff, TariffVersion, Wallet
from billing.wallets import wallet_move

DEMO_TARIFF = "Demo two-rate (TOU)"
DEMO_WALLET = "Demo prepaid wallet"
DEMO_ACCOUNT = "Demo depot (prepaid)"
WEEK = ["weekday"]
REST = ["weekend", "holiday"]
PERIODS = [
    {"name": "peak", "months": [1, 12], "day_types": WEEK, "start": "07:00", "end": "21:00", "rate": "0.3400"},
    {"name": "off-peak", "months": [1, 12], "day_types": WEEK, "start": "00:00", "end": "07:00", "rate": "0.2200"},
    {"name": "off-peak", "months": [1, 12], "day_types": WEEK, "start": "21:00", "end": "24:00", "rate": "0.2200"},
    {"name": "off-peak", "months": [1, 12], "day_types": REST, "start": "00:00", "end": "24:00", "rate": "0.2200"},
]


def billing_demo_extend(*, organization, user, site, meters) -> dict:
    tariff, _ = Tariff.objects.get_or_create(
        organization=organization, name=DEMO_TARIFF, defaults={"currency": "EUR", "country": "DE", "subdivision": "BE"}
    )
    if not tariff.versions.exists():
        TariffVersion.objects.create(
            tariff=tariff, valid_from=date(2020, 1, 1), periods=PERIODS, export_rate=Decimal("0.0800"),
            fixed_per_month=Decimal("9.90"), tax_pct=Decimal("19"),
        )  # fmt: skip
    wallet, _ = Wallet.objects.get_or_create(
        organization=organization, name=DEMO_WALLET,
        defaults={"currency": "EUR", "low_balance_threshold": Decimal("5.00"), "auto_topup_amount": Decimal("20.00")},
    )  # fmt: skip
    if not wallet.transactions.exists():
        wallet_move(
            organization_id=organization.pk, wallet_id=wallet.pk, kind="credit", amount=Decimal("5.50"),
            currency="EUR", idempotency_key="demo:opening-credit", reference="demo", source="demo",
        )  # fmt: skip
    account, created = Account.objects.get_or_create(
        organization=organization, name=DEMO_ACCOUNT,
        defaults={"site": site, "tariff": tariff, "mode": Account.Mode.PREPAID, "wallet": wallet, "cycle_day": 1},
    )  # fmt: skip
    grid = meters.get("grid")
    if created and grid is not None:
        account.meters.set([grid])
    return {
        "tariff_id": tariff.pk,
        "wallet_id": wallet.pk,
        "account_id": account.pk,
    }


def billing_demo_topup(*, organization) -> dict | None:
    """What the demo's top-up rule credits: the `wallet_topup` action's config for the demo
    wallet of `organization` (its suggested top-up), or None before billing's demo ran."""
    wallet = Wallet.objects.for_org(organization).filter(name=DEMO_WALLET).first()
    if wallet is None:
        return None
    amount = wallet.auto_topup_amount or Decimal("20.00")
    return {"wallet_id": wallet.pk, "amount": str(amount.quantize(Decimal("0.01"))), "currency": wallet.currency}
