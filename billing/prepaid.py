"""Prepaid consumption debits: each prepaid account's newly completed 15-minute intervals are
charged to its wallet as they complete.

The charge of [old cursor, new cursor) is the running bill of the cycle up to the new cursor
minus the running bill up to the old one (so tiers, demand peaks and tax come out right as the
cycle fills), without the minimum charge (settled by the statement). The account row is locked,
the movement's idempotency key is `prepaid:<account>:<from>/<to>` and the cursor
(`debited_through`) advances in the same transaction: a re-run, or two workers at once, never
charge an interval twice. A step never crosses a cycle boundary.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.cycles import cycle_of, floor_quarter
from billing.models import Account, WalletTransaction
from billing.preview import account_cost
from billing.selectors import account_timezone
from billing.wallets import wallet_move

MAX_STEPS = 48  # cycles an account may catch up on in one run


def _running_total(account: Account, cycle_start: datetime, upto: datetime, now: datetime) -> Decimal:
    if upto <= cycle_start:
        return Decimal(0)
    bill = account_cost(account=account, start=cycle_start, end=upto, now=now).bill
    minimum = sum((line.amount for line in bill.lines if line.kind == "minimum"), Decimal(0))
    if not minimum:
        return bill.total
    # Without the minimum top-up, tax included on the rest (the statement settles the minimum).
    without = [line for line in bill.lines if line.kind != "minimum"]
    share = (bill.subtotal - minimum) / bill.subtotal if bill.subtotal else Decimal(0)
    return sum((line.amount for line in without), Decimal(0)) + (bill.tax * share).quantize(bill.tax)


@transaction.atomic
def account_prepaid_debit(*, account_id: int, now: datetime | None = None) -> int:
    """Charge the account's completed intervals since its cursor; returns movements written.
    Tenant: the account's organization and its own wallet."""
    now = now or timezone.now()
    account = Account.objects.select_for_update().select_related("site", "tariff").get(pk=account_id)
    if account.mode != Account.Mode.PREPAID or account.wallet_id is None:
        return 0
    tz = account_timezone(account=account)
    horizon = floor_quarter(now)
    cursor = account.debited_through or floor_quarter(account.created_at)
    written = 0
    for _step in range(MAX_STEPS):
        if cursor >= horizon:
            break
        cycle_start, cycle_end = cycle_of(cursor, cycle_day=account.cycle_day, tz=tz)
        target = min(horizon, cycle_end)
        amount = _running_total(account, cycle_start, target, now) - _running_total(account, cycle_start, cursor, now)
        if amount:
            wallet_move(
                organization_id=account.organization_id, wallet_id=account.wallet_id,
                kind=WalletTransaction.Kind.DEBIT if amount > 0 else WalletTransaction.Kind.CREDIT,
                amount=abs(amount), currency=account.tariff.currency,
                idempotency_key=f"prepaid:{account.pk}:{cursor.isoformat()}/{target.isoformat()}",
                reference=f"account:{account.pk}", source="billing.prepaid", allow_arrears=True,
            )  # fmt: skip
            written += 1
        cursor = target
    if cursor != account.debited_through:
        Account.objects.filter(pk=account.pk).update(debited_through=cursor)
    return written


def prepaid_accounts_due(*, now: datetime | None = None) -> list[int]:
    """Prepaid accounts with a completed interval not yet charged."""
    horizon = floor_quarter(now or timezone.now())
    due = Account.objects.filter(mode=Account.Mode.PREPAID, wallet__isnull=False)
    return list(due.exclude(debited_through__gte=horizon).order_by("pk").values_list("pk", flat=True))
