"""The wallet ledger: every movement of a prepaid balance, append-only, idempotent.

`wallet_move` is the one writer. It locks the wallet row (SELECT … FOR UPDATE on PostgreSQL; on
SQLite the database lock serializes writers), looks the idempotency key up under that lock (a
repeated key with the same amount answers the first movement; with another amount it is a
conflict), appends the movement with the balance after it and stores that balance on the wallet
in the same transaction, so `balance` is always the sum of the ledger.

On PostgreSQL the common movement (a new key, the right currency, within the floor and the
range, no low-balance crossing to publish) takes one round trip instead: a single statement
whose UPDATE of the wallet row is the lock, adds the amount to the running balance and feeds
the INSERT of the movement (`MOVE_SQL`). Outside a transaction, concurrent callers of one
process are joined into one transaction (joulepoint.platform.group_commit): writers of one
wallet serialize on its row lock, which PostgreSQL holds until the commit's WAL flush, so one
flush per movement bounded the rate (about 1 / fsync time); one flush per group is what lets 8
writers on one wallet pass 500 movements/s (bench/billing.py). Inside a caller's transaction
the statement runs under a savepoint. Whenever the statement does not
apply (0 rows: a repeated key, another currency, the floor, a crossing whose event must be
written to the outbox in the same transaction, a missing wallet) or a concurrent writer took the
same key first (the unique constraint answers), the locked path above decides and answers, so
both paths keep the same invariants.

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

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.apps import WALLET_LOW_BALANCE
from billing.models import Wallet, WalletTransaction
from billing.money import currency_valid
from joulepoint.audit.registry import audit_creates_record
from joulepoint.events import publish
from joulepoint.platform.group_commit import GroupCommit

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
    row = dict(
        organization_id=organization_id, wallet_id=wallet_id, kind=kind, amount=signed, currency=currency,
        idempotency_key=idempotency_key, reference=reference[:200], source=source[:200], reason=reason,
        created_by=created_by,
    )  # fmt: skip
    if connection.vendor == "postgresql":
        floor_free = signed >= 0 or allow_arrears or kind == WalletTransaction.Kind.ADJUSTMENT
        if connection.in_atomic_block:
            movement = _move_in_one_statement((row, floor_free))
        else:
            try:
                movement = _movements_grouped.submit((row, floor_free))
            except IntegrityError:  # a group of one whose key a concurrent writer took first
                movement = None
        if movement is not None:
            # Inserted by the statement above, unseen by auditlog: recorded here, in the caller's
            # context (its request or door names the actor), as save() would have.
            audit_creates_record([movement.transaction])
            return movement
    return _move_locked(row, allow_arrears=allow_arrears)


MOVE_SQL = """
    WITH moved AS (
        UPDATE {wallets} SET balance = balance + %(amount)s,
               low_balance_notified = low_balance_notified AND balance + %(amount)s < low_balance_threshold
        WHERE id = %(wallet_id)s AND organization_id = %(organization_id)s AND currency = %(currency)s
          AND (low_balance_notified OR balance + %(amount)s >= low_balance_threshold)
          AND (%(floor_free)s OR balance + %(amount)s >= 0)
          AND abs(balance + %(amount)s) < %(max_balance)s
          AND NOT EXISTS (SELECT 1 FROM {movements}
                          WHERE wallet_id = %(wallet_id)s AND idempotency_key = %(idempotency_key)s)
        RETURNING balance
    )
    INSERT INTO {movements} (organization_id, wallet_id, kind, amount, currency, balance_after, idempotency_key,
                             reference, source, reason, created_by_id, created_at)
    SELECT %(organization_id)s, %(wallet_id)s, %(kind)s, %(amount)s, %(currency)s, balance, %(idempotency_key)s,
           %(reference)s, %(source)s, %(reason)s, %(created_by_id)s, %(created_at)s
    FROM moved
    RETURNING id, balance_after
"""


def _statement_params(row: dict, floor_free: bool) -> dict:
    return {
        **{k: v for k, v in row.items() if k != "created_by"},
        "created_by_id": getattr(row["created_by"], "pk", None),
        "created_at": timezone.now(),
        "floor_free": floor_free,
        "max_balance": MAX_BALANCE,
    }


def _movement_of(row: dict, params: dict, found: tuple | None) -> Movement | None:
    if found is None:
        return None
    movement = WalletTransaction(id=found[0], balance_after=found[1], created_at=params["created_at"], **row)
    movement._state.adding, movement._state.db = False, connection.alias
    return Movement(movement, True)


def _movements_store(items: list[tuple[dict, bool]]) -> list[Movement | None]:
    """A group's movements, one statement each, in the leader's transaction, sent together
    (psycopg's executemany pipelines them: one round trip, not one per movement). A key taken by
    a writer that committed after a statement's snapshot fails its INSERT on the unique
    constraint; that aborts the group and every member decides alone (GroupCommit), or, in a
    group of one, raises to `wallet_move`, which takes the locked path."""
    sql = MOVE_SQL.format(wallets=Wallet._meta.db_table, movements=WalletTransaction._meta.db_table)
    params = [_statement_params(row, floor_free) for row, floor_free in items]
    found = []
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        cursor.executemany(sql, params, returning=True)
        while True:
            found.append(cursor.fetchone())
            if not cursor.nextset():
                break
    return [_movement_of(row, p, f) for (row, _floor), p, f in zip(items, params, found, strict=True)]


def _move_in_one_statement(item: tuple[dict, bool]) -> Movement | None:
    """One movement's statement, or None when the locked path must decide (see the module's
    docstring). The UPDATE's conditions are re-checked on the newest row version after waiting
    for the lock, so balance, floor and crossing are decided on the committed balance; a key
    taken by a writer that committed after this statement's snapshot makes the INSERT fail on
    the unique constraint, and the statement (the balance too) is rolled back."""
    row, floor_free = item
    params = _statement_params(row, floor_free)
    sql = MOVE_SQL.format(wallets=Wallet._meta.db_table, movements=WalletTransaction._meta.db_table)
    try:
        with transaction.atomic(), connection.cursor() as cursor:  # a savepoint in a caller's transaction
            cursor.execute(sql, params)
            found = cursor.fetchone()
    except IntegrityError:
        return None
    return _movement_of(row, params, found)


_movements_grouped: GroupCommit[tuple[dict, bool], Movement | None] = GroupCommit(
    store=_movements_store, alone=_move_in_one_statement, limit=128
)


@transaction.atomic
def _move_locked(row: dict, *, allow_arrears: bool) -> Movement:
    organization_id, wallet_id, kind, currency = row["organization_id"], row["wallet_id"], row["kind"], row["currency"]
    idempotency_key, signed = row["idempotency_key"], row["amount"]
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
    movement = WalletTransaction.objects.create(balance_after=after, **row)
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
