"""`wallet_topup`: credit a wallet through the billing app's seam; waits while billing is not
installed (the sweeper releases waiting top-ups once it is)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from django.apps import apps

from automations.deliveries.actions.base import ConfigError, Handler, Outcome, unknown_keys
from automations.models import ActionType, Delivery

CURRENCY = re.compile(r"^[A-Z]{3}$")


def billing_topup_service():
    """The billing app's top-up service, or None while billing is not installed.

    The seam (docs/automations.md): `billing.services.wallet_topup(*, organization_id, wallet_id,
    amount, currency, idempotency_key, source)`; it must credit at most once per idempotency key.
    """
    if not apps.is_installed("billing"):
        return None
    try:
        from billing import services as billing_services  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(billing_services, "wallet_topup", None)


class WalletTopupHandler(Handler):
    type = ActionType.WALLET_TOPUP

    def validate(self, config: dict, *, organization) -> dict:
        errors: dict[str, str] = {}
        unknown_keys(errors, config, {"wallet_id", "amount", "currency"})
        wallet_id = config.get("wallet_id")
        if isinstance(wallet_id, bool) or not isinstance(wallet_id, int) or wallet_id < 1:
            errors["wallet_id"] = "must be a wallet id (a positive integer)"
        amount = config.get("amount")
        try:
            value = Decimal(str(amount)) if isinstance(amount, str | int) and not isinstance(amount, bool) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0 or value > Decimal("1000000"):
            errors["amount"] = 'must be a decimal string (e.g. "25.00") above 0 and at most 1000000'
        elif value.as_tuple().exponent < -4:
            errors["amount"] = "at most 4 decimal places"
        currency = config.get("currency")
        if not isinstance(currency, str) or not CURRENCY.match(currency):
            errors["currency"] = "must be an ISO 4217 code such as EUR"
        if errors:
            raise ConfigError(errors)
        return {"wallet_id": wallet_id, "amount": str(value), "currency": currency}

    def render(self, config: dict, context: dict) -> dict:
        return dict(config)

    def execute(self, delivery: Delivery) -> Outcome:
        topup = billing_topup_service()
        if topup is None:
            return Outcome(ok=False, waiting=True, error="waiting for billing: the billing service is not installed")
        try:
            result = topup(
                organization_id=delivery.organization_id,
                wallet_id=delivery.payload["wallet_id"],
                amount=Decimal(delivery.payload["amount"]),
                currency=delivery.payload["currency"],
                idempotency_key=delivery.idempotency_key,
                source=f"automations.delivery:{delivery.pk}",
            )
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(ok=True, result=result if isinstance(result, dict) else {"result": str(result)})
