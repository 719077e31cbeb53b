"""Billing's part of `make run`'s demo: a tariff, a prepaid account on the grid meter, a wallet just
above its threshold; idempotent like the rest of the demo."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.apps import WALLET_LOW_BALANCE
from billing.demo import billing_demo_topup
from billing.models import Account, Tariff, Wallet
from billing.prepaid import account_prepaid_debit
from energy.demo import demo_ensure
from joulepoint.events.models import OutboxEvent
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_demo_has_a_prepaid_account_that_crosses_its_threshold(tmp_path):
    data = demo_ensure(state_path=tmp_path / "demo.json")["billing"]
    demo_ensure(state_path=tmp_path / "demo.json")
    assert Tariff.objects.count() == Wallet.objects.count() == Account.objects.count() == 1
    account = Account.objects.get(pk=data["account_id"])
    wallet = account.wallet
    assert (account.mode, wallet.balance, wallet.low_balance_threshold) == ("prepaid", Decimal("5.50"), Decimal("5.00"))
    topup = billing_demo_topup(organization=account.organization)
    assert topup == {"wallet_id": wallet.pk, "amount": "20.00", "currency": "EUR"}  # the rule's action (automations)

    # The simulator's grid meter continues the demo's history, 2 kWh every 5 minutes; the first
    # prepaid debit takes the wallet below 5.
    since = factories.readings_continue(account.meters.get(), kwh_per_step=2.0)
    Account.objects.filter(pk=account.pk).update(debited_through=None, created_at=since)
    assert account_prepaid_debit(account_id=account.pk) >= 1  # two at a cycle's turn
    wallet.refresh_from_db()
    assert wallet.balance < Decimal("5.00")
    assert OutboxEvent.objects.filter(key=WALLET_LOW_BALANCE).count() == 1
