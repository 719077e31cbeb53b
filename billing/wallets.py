"""The wallet ledger: every movement of a prepaid balance, append-only, idempotent.

`wallet_move` is the one writer. It locks the wallet row (SELECT … FOR UPDATE on PostgreSQL; on
SQLite the database lock serializes writers), looks the idempotency key up under that lock (a
repeated key with the same amount answers the first movement; with another amount it is a
conflict), appends the movement with the balance after it and stores that balance on the wallet
in the same transaction, so `balance` is always the sum of the ledger.

Floor: a debit requested through the API or the admin may not take the balance below zero
(`WalletFloor`); consumption debits of prepaid accounts (`allow_arrears=True`) always post,
because the energy was used: refusing would lose the record, so the wallet goes into arrears and
the low-balance event has already told someone to top up.

`wallet.low_balance` is published when a movement takes the balance from at or above the
threshold to below it, once: `low_balance_notified` is set then and cleared when the balance is
back at or above the threshold, so ten debits below it publish one event, not ten.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from billing.apps import WALLET_LOW_BALANCE
from billing.models import Wallet, WalletTransaction
from billing.money import currency_valid
from joulepoint.events import publish

MAX_AMOUNT = Decimal("1000000000")
MAX_BALANCE = Decimal("1000000000000") / 100  # the balance columns keep 10 integer digits
PLACES = 4  # the ledger's columns (billing.models.tariffs.MONEY)
QUANTUM = Decimal(1).scaleb(-PLACES)
KINDS_POSITIVE = {WalletTransaction.Kind.CREDIT, WalletTransaction.Kind.TOPUP, WalletTransaction.Kind.REFUND}


class LedgerError(Exception):
    """A movement refused; `field` names what is wrong, `status` the HTTP answer it maps to."""

    status = 400

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class IdempotencyConflict(LedgerError):
    status = 409


class WalletFloor(LedgerError):
    pass


@dataclass
class Movement:
    transaction: WalletTransaction
    created: bool


def _signed(kind: str, amount: Decimal) -> Decimal:
    if kind == WalletTransaction.Kind.ADJUSTMENT:
        if amount == 0:
            raise LedgerError("amount", "an adjustment must not be zero")
        return amount
    if amount <= 0:
        raise LedgerError("amount", "must be above 0 (the kind gives the sign)")
    return amount if kind in KINDS_POSITIVE else -amount


@transaction.atomic
def wallet_move(
    *,
    organization_id: int,
    wallet_id: int,
    kind: str,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
    reference: str = "",
    source: str = "",
    reason: str = "",
    created_by=None,
    allow_arrears: bool = False,
) -> Movement:
    """Append one movement to a wallet of `organization_id` (Wallet.DoesNotExist when it is
    another's or missing). Invariants: balance == sum(ledger) after commit; one movement per
    (wallet, idempotency_key); the same key with a different amount or kind raises
    IdempotencyConflict; amounts are Decimal in the wallet's currency."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise LedgerError("amount", "must be a Decimal")  # a float never becomes money
    if abs(amount) > MAX_AMOUNT:
        raise LedgerError("amount", f"at most {MAX_AMOUNT}")
    if kind not in WalletTransaction.Kind.values:
        raise LedgerError("kind", f"one of {', '.join(WalletTransaction.Kind.values)}")
    if not idempotency_key or len(idempotency_key) > 200:
        raise LedgerError("idempotency_key", "1-200 characters are required")
    if kind == WalletTransaction.Kind.ADJUSTMENT and not reason.strip():
        raise LedgerError("reason", "an adjustment needs a reason")
    if amount.as_tuple().exponent < -PLACES:
        raise LedgerError("amount", f"at most {PLACES} decimal places")
    signed = _signed(kind, amount).quantize(QUANTUM)  # as stored, so a repeat compares and answers alike
    wallet = Wallet.objects.select_for_update().get(pk=wallet_id, organization_id=organization_id)
    if not currency_valid(currency) or currency != wallet.currency:
        raise LedgerError("currency", f"the wallet's currency is {wallet.currency}")
    existing = WalletTransaction.objects.filter(wallet=wallet, idempotency_key=idempotency_key).first()
    if existing is not None:
        if existing.amount != signed or existing.kind != kind:
            raise IdempotencyConflict(
                "idempotency_key",
                f"already used for a {existing.kind} of {abs(existing.amount)} {existing.currency}",
            )
        return Movement(existing, False)
    before = wallet.balance
    after = before + signed
    if abs(after) >= MAX_BALANCE:
        raise LedgerError("amount", f"the balance would leave the ledger's range (below {MAX_BALANCE})")
    if signed < 0 and after < 0 and not allow_arrears and kind != WalletTransaction.Kind.ADJUSTMENT:
        raise WalletFloor("amount", f"would take the balance ({before} {wallet.currency}) below zero")
    # No savepoint around the INSERT: under the wallet's row lock no other movement of this wallet
    # can take the key between the lookup above and here (the unique constraint still guards it).
    movement = WalletTransaction.objects.create(
        organization_id=organization_id, wallet=wallet, kind=kind, amount=signed, currency=wallet.currency,
        balance_after=after, idempotency_key=idempotency_key, reference=reference[:200],
        source=source[:200], reason=reason, created_by=created_by,
    )  # fmt: skip
    wallet.balance = after
    fields = ["balance"]
    threshold = wallet.low_balance_threshold
    if after < threshold and not wallet.low_balance_notified:
        wallet.low_balance_notified = True
        fields.append("low_balance_notified")
        publish(
            wallet.organization_id,
            WALLET_LOW_BALANCE,
            {
                "wallet_id": wallet.pk,
                "wallet_name": wallet.name,
                "balance": str(after),
                "threshold": str(threshold),
                "currency": wallet.currency,
                "suggested_topup": None if wallet.auto_topup_amount is None else str(wallet.auto_topup_amount),
                "transaction_id": movement.pk,
            },
            source="billing.wallets",
        )
    elif after >= threshold and wallet.low_balance_notified:
        wallet.low_balance_notified = False
        fields.append("low_balance_notified")
    wallet.save(update_fields=fields)
    return Movement(movement, True)


def wallet_topup(
    *, organization_id: int, wallet_id: int, amount: Decimal, currency: str, idempotency_key: str, source: str
) -> dict:
    """The seam automations' `wallet_topup` action calls: credit `amount` once per
    `idempotency_key` (a retried delivery answers the first movement). Tenant: the wallet must
    belong to `organization_id`."""
    movement = wallet_move(
        organization_id=organization_id, wallet_id=wallet_id, kind=WalletTransaction.Kind.TOPUP,
        amount=Decimal(amount), currency=currency, idempotency_key=idempotency_key, reference=source, source=source,
    )  # fmt: skip
    row = movement.transaction
    return {
        "transaction_id": row.pk,
        "created": movement.created,
        "amount": str(row.amount),
        "currency": row.currency,
        "balance_after": str(row.balance_after),
    }
