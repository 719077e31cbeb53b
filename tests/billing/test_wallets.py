"""The ledger: idempotency keys, the floor, low-balance events once per crossing, the top-up seam
automations calls, and the balance equal to the sum of the ledger (also under concurrency)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum

from billing.apps import WALLET_LOW_BALANCE
from billing.models import Wallet, WalletTransaction
from billing.services import wallet_topup
from billing.wallets import LedgerError, wallet_move
from joulepoint.events.models import OutboxEvent
from tests import factories

WALLETS = "/api/energy/wallets"
LEDGER = "/api/energy/wallet-transactions"


def ledger_sum(wallet) -> Decimal:
    return WalletTransaction.objects.filter(wallet=wallet).aggregate(total=Sum("amount"))["total"] or Decimal(0)


def move(wallet, kind, amount, key, **extra):
    return wallet_move(
        organization_id=wallet.organization_id, wallet_id=wallet.pk, kind=kind, amount=Decimal(amount),
        currency=wallet.currency, idempotency_key=key, **extra,
    )  # fmt: skip


@pytest.mark.django_db
def test_create_a_wallet_and_credit_it_once_per_idempotency_key(api, org):
    wallet = api.post(WALLETS, {"name": "Tenant 4", "currency": "EUR", "low_balance_threshold": "5"}, format="json")
    assert wallet.status_code == 201, wallet.content
    wallet_id = wallet.json()["id"]
    body = {"wallet": wallet_id, "kind": "credit", "amount": "10.00", "currency": "EUR", "idempotency_key": "pay-1"}
    first = api.post(LEDGER, body, format="json")
    assert first.status_code == 201, first.content
    assert (first.json()["amount"], first.json()["balance_after"]) == ("10.0000", "10.0000")

    again = api.post(f"{LEDGER}/", body, format="json")
    assert again.status_code == 200 and again.json() == first.json()
    conflict = api.post(LEDGER, {**body, "amount": "11.00"}, format="json")
    assert conflict.status_code == 409 and "idempotency_key" in conflict.json()

    assert api.get(f"{WALLETS}/{wallet_id}").json()["balance"] == "10.0000"
    assert WalletTransaction.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 10.5}, "amount"),  # a JSON float: refused, money travels as a decimal string
        ({"amount": "-3"}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"kind": "gift"}, "kind"),
        ({"kind": "adjustment"}, "reason"),
        ({"kind": "debit", "amount": "10.01"}, "amount"),  # below the floor (zero)
    ],
)
def test_bad_movements_are_4xx_naming_the_field_and_write_nothing(api, org, change, field):
    wallet = factories.WalletFactory(organization=org)
    move(wallet, "credit", "10", "opening")
    body = {"wallet": wallet.pk, "kind": "credit", "amount": "1", "currency": "EUR", "idempotency_key": "k", **change}
    response = api.post(LEDGER, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert WalletTransaction.objects.count() == 1
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("10")


@pytest.mark.django_db
def test_a_float_amount_never_reaches_the_ledger(org):
    wallet = factories.WalletFactory(organization=org)
    with pytest.raises(LedgerError):
        wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="credit", amount=0.1, currency="EUR",
                    idempotency_key="float")  # fmt: skip


@pytest.mark.django_db
def test_a_foreign_wallet_is_invisible(outsider_api, org):
    wallet = factories.WalletFactory(organization=org)
    body = {"wallet": wallet.pk, "kind": "credit", "amount": "1", "currency": "EUR", "idempotency_key": "k"}
    assert outsider_api.post(LEDGER, body, format="json").status_code == 400
    with pytest.raises(Wallet.DoesNotExist):
        wallet_topup(organization_id=org.pk + 1, wallet_id=wallet.pk, amount=Decimal(1), currency="EUR",
                     idempotency_key="x", source="test")  # fmt: skip


@pytest.mark.django_db
def test_low_balance_is_published_once_per_crossing(org):
    wallet = factories.WalletFactory(organization=org, low_balance_threshold=Decimal("5"))
    move(wallet, "credit", "10", "c1")
    for n, amount in enumerate(["3", "3", "1", "1"]):  # 7, 4 (crossing), 3, 2
        move(wallet, "debit", amount, f"d{n}")
    events = OutboxEvent.objects.filter(key=WALLET_LOW_BALANCE)
    assert events.count() == 1
    assert events.get().payload | {"transaction_id": None} == {
        "wallet_id": wallet.pk, "wallet_name": wallet.name, "balance": "4.0000", "threshold": "5.0000",
        "currency": "EUR", "suggested_topup": None, "transaction_id": None,
    }  # fmt: skip
    move(wallet, "topup", "10", "t1")  # 12: back above
    move(wallet, "debit", "9", "d9")  # 3: a second crossing
    assert events.count() == 2
    wallet.refresh_from_db()
    assert wallet.balance == ledger_sum(wallet) == Decimal("3")


@pytest.mark.django_db
def test_manual_adjustments_need_a_reason_and_may_be_negative(org, owner):
    wallet = factories.WalletFactory(organization=org)
    with pytest.raises(LedgerError) as error:
        move(wallet, "adjustment", "-2", "a1")
    assert error.value.field == "reason"
    movement = move(wallet, "adjustment", "-2", "a1", reason="meter misread in March", created_by=owner)
    assert (movement.transaction.amount, movement.transaction.created_by) == (Decimal("-2"), owner)


@pytest.mark.django_db
def test_the_automations_wallet_topup_action_credits_exactly_once(org, meter):
    from tests.automations.test_actions import fire, fire_again

    wallet = factories.WalletFactory(organization=org)
    action = factories.ActionFactory(
        organization=org, type="wallet_topup", config={"wallet_id": wallet.pk, "amount": "25.00", "currency": "EUR"}
    )
    delivery = fire(org, meter, action)
    assert delivery.status == "succeeded", delivery.last_error
    assert delivery.result["amount"] == "25.0000"
    # The same delivery retried (its idempotency key): no second movement.
    result = wallet_topup(organization_id=org.pk, wallet_id=wallet.pk, amount=Decimal("25.00"), currency="EUR",
                          idempotency_key=delivery.idempotency_key, source="retry")  # fmt: skip
    assert result["created"] is False and result["transaction_id"] == delivery.result["transaction_id"]
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("25") == ledger_sum(wallet)
    fire_again(org, meter)  # another event is another top-up
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("50")


WRITERS = 8
MOVES = 25


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency need PostgreSQL")
def test_concurrent_debits_and_topups_keep_the_balance_equal_to_the_ledger(org):
    wallet = factories.WalletFactory(organization=org)
    move(wallet, "credit", "1000", "opening")
    errors = []

    def writer(n: int) -> None:
        try:
            for i in range(MOVES):
                kind = "topup" if (n + i) % 2 else "debit"
                move(wallet, kind, "1.25", f"w{n}-{i}")
                move(wallet, kind, "1.25", f"w{n}-{i}")  # a retry: no second movement
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    wallet.refresh_from_db()
    assert WalletTransaction.objects.filter(wallet=wallet).count() == 1 + WRITERS * MOVES
    assert wallet.balance == ledger_sum(wallet) == Decimal("1000")
    # Each movement's balance_after continues the previous one: a serial history.
    previous = Decimal(0)
    for amount, after in (
        WalletTransaction.objects.filter(wallet=wallet).order_by("id").values_list("amount", "balance_after")
    ):
        assert after == previous + amount
        previous = after


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under real concurrency need PostgreSQL")
def test_writers_racing_on_the_same_keys_post_each_movement_once(org):
    """Every writer sends the same keys at once: the one-statement path's unique-constraint
    fallback must answer the first movement, never a second one or an error."""
    wallet = factories.WalletFactory(organization=org, low_balance_threshold=Decimal("990"))
    move(wallet, "credit", "1000", "opening")
    errors, answers = [], []
    barrier = threading.Barrier(WRITERS)

    def writer() -> None:
        try:
            barrier.wait()
            for i in range(MOVES):
                answers.append(move(wallet, "debit", "1.25", f"same-{i}").transaction.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = WalletTransaction.objects.filter(wallet=wallet)
    assert rows.count() == 1 + MOVES and len(set(answers)) == MOVES
    wallet.refresh_from_db()
    assert wallet.balance == ledger_sum(wallet) == Decimal("1000") - MOVES * Decimal("1.25")
    assert wallet.low_balance_notified
    assert OutboxEvent.objects.filter(key=WALLET_LOW_BALANCE).count() == 1  # 1000 → below 990 once
