"""The rules of an account's configuration, shared by the API and the admin."""

from __future__ import annotations

from billing.models import Account


def account_errors(*, organization_id: int, values: dict, instance: Account | None = None) -> dict[str, str]:
    """What is wrong with an account's values (empty when nothing): every referenced row must be
    the organization's (the API's related fields already only see those; the admin checks here
    too), 1 ≤ cycle_day ≤ 28 (every month has it), a prepaid account needs a wallet, and a
    wallet must be in the tariff's currency."""

    def current(name):
        return values[name] if name in values else getattr(instance, name, None)

    errors: dict[str, str] = {}
    for name in ("site", "tariff", "wallet"):
        row = current(name)
        if row is not None and row.organization_id != organization_id:
            errors[name] = "belongs to another organization"
    for name in ("meters", "groups"):
        rows = values.get(name) or []
        if any(row.organization_id != organization_id for row in rows):
            errors[name] = "every one must belong to this organization"
    cycle_day = current("cycle_day")
    if cycle_day is not None and not 1 <= cycle_day <= 28:
        errors["cycle_day"] = "must be 1-28 (every month has that day)"
    tariff, wallet, mode = current("tariff"), current("wallet"), current("mode")
    if mode == Account.Mode.PREPAID and wallet is None:
        errors["wallet"] = "a prepaid account needs a wallet"
    if wallet is not None and tariff is not None and wallet.currency != tariff.currency:
        errors["wallet"] = f"the wallet is in {wallet.currency}, the tariff in {tariff.currency}"
    if wallet is not None:
        taken = Account.objects.filter(wallet=wallet)
        if instance is not None:
            taken = taken.exclude(pk=instance.pk)
        if taken.exists():
            errors["wallet"] = "already the wallet of another account"
    return errors
