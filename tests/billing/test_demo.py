"""Billing's part of `make run`'s demo: a tariff, a prepaid account on the grid meter, a wallet just
above its threshold; idempotent like the rest of the demo."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

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

    # The simulator's grid meter draws a few kWh; the first prepaid debit takes the wallet below 5.
    grid = account.meters.get()
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=2)
    rows = factories.reading_series(start, timedelta(minutes=5), 20, total_energy=lambda i: 1000 + 0.5 * i)
    factories.readings_replace(grid, rows)  # the mlops demo seeded this meter's last week
    Account.objects.filter(pk=account.pk).update(debited_through=None, created_at=start)
    assert account_prepaid_debit(account_id=account.pk) == 1
    wallet.refresh_from_db()
    assert wallet.balance < Decimal("5.00")
    assert OutboxEvent.objects.filter(key=WALLET_LOW_BALANCE).count() == 1
