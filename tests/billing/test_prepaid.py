"""Prepaid accounts: consumption debited as intervals complete, once; statements settle only the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.models import Account, Statement, WalletTransaction
from billing.periodic import prepaid_debits_run, statements_due_run
from billing.prepaid import account_prepaid_debit
from billing.services import statement_generate, wallet_move
from tests import factories

pytestmark = pytest.mark.django_db

FRIDAY = datetime(2025, 10, 17, 8, tzinfo=UTC)


@pytest.fixture
def prepaid(org, site, meter):
    wallet = factories.WalletFactory(organization=org, low_balance_threshold=Decimal("99.50"))
    wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="credit", amount=Decimal("100"), currency="EUR",
                idempotency_key="opening")  # fmt: skip
    account = factories.AccountFactory(organization=org, site=site, meters=[meter], mode="prepaid", wallet=wallet)
    Account.objects.filter(pk=account.pk).update(debited_through=datetime(2025, 10, 17, tzinfo=UTC))
    rows = factories.reading_series(FRIDAY, timedelta(minutes=15), 4, total_energy=[100, 101, 102, 103])
    factories.readings_create(meter, rows)
    return Account.objects.get(pk=account.pk)


def test_completed_intervals_are_debited_once(prepaid):
    now = datetime(2025, 10, 17, 12, 7, tzinfo=UTC)
    assert account_prepaid_debit(account_id=prepaid.pk, now=now) == 1
    assert account_prepaid_debit(account_id=prepaid.pk, now=now) == 0  # a re-run charges nothing
    assert prepaid_debits_run(now=now) == 0
    wallet = prepaid.wallet
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("99.10")  # 3 kWh x 0.30
    [debit] = WalletTransaction.objects.filter(kind="debit")
    assert debit.idempotency_key == f"prepaid:{prepaid.pk}:2025-10-17T00:00:00+00:00/2025-10-17T12:00:00+00:00"
    assert wallet.low_balance_notified  # 99.10 < 99.50: crossed once


def test_the_statement_of_a_prepaid_cycle_debits_nothing_twice(prepaid):
    account_prepaid_debit(account_id=prepaid.pk, now=datetime(2025, 10, 18, tzinfo=UTC))
    start, end = datetime(2025, 10, 17, tzinfo=UTC), datetime(2025, 10, 18, tzinfo=UTC)
    statement, created = statement_generate(account=prepaid, start=start, end=end)
    assert created and (statement.total, statement.prepaid_debited) == (Decimal("0.90"), Decimal("0.90"))
    prepaid.wallet.refresh_from_db()
    assert prepaid.wallet.balance == Decimal("99.10")
    assert WalletTransaction.objects.filter(idempotency_key__startswith="statement:").count() == 0


def test_a_statement_settles_what_prepaid_debits_did_not_cover(prepaid, org):
    # Nothing was debited yet (the task had not run): the statement debits the whole total, once.
    start, end = datetime(2025, 10, 17, tzinfo=UTC), datetime(2025, 10, 18, tzinfo=UTC)
    statement, _ = statement_generate(account=prepaid, start=start, end=end)
    statement_generate(account=prepaid, start=start, end=end)
    [settlement] = WalletTransaction.objects.filter(idempotency_key=f"statement:{statement.pk}")
    assert settlement.amount == Decimal("-0.90")


def test_beat_issues_each_closed_cycle_once(org, site, meter):
    account = factories.AccountFactory(organization=org, site=site, meters=[meter])
    Account.objects.filter(pk=account.pk).update(created_at=datetime(2025, 9, 1, tzinfo=UTC))
    now = datetime(2025, 11, 3, tzinfo=UTC)
    assert statements_due_run(now=now) == 1
    assert statements_due_run(now=now) == 0
    statement = Statement.objects.get()
    assert (statement.period_start, statement.period_end) == (
        datetime(2025, 9, 30, 22, tzinfo=UTC),  # 1 October, local midnight in Berlin
        datetime(2025, 10, 31, 23, tzinfo=UTC),  # 1 November (after the DST change)
    )
