"""Billing end to end: a real Celery worker on Redis and PostgreSQL. A debit crosses the wallet's
threshold, `wallet.low_balance` goes through the outbox to the worker, a rule with a
`wallet_topup` action credits the wallet through billing.services.wallet_topup, and a retried
delivery (its attempt run again, as after a lost acknowledgement) credits nothing more."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from automations.models import Delivery
from automations.taskqueue import DELIVERY_ATTEMPT
from billing.apps import WALLET_LOW_BALANCE
from billing.models import Wallet, WalletTransaction
from billing.services import wallet_move
from joulepoint.platform.enqueue import enqueue
from tests import factories
from tests.automations.worker import Worker, purge_queue
from tests.e2e.test_automations_e2e import WORKER_ENV, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.CELERY_BROKER_URL, reason="needs a Celery broker: set REDIS_URL"),
]


@pytest.fixture
def worker():
    purge_queue(settings.CELERY_BROKER_URL)
    w = Worker(WORKER_ENV).start()
    yield w
    w.stop()


def test_a_low_balance_rule_tops_the_wallet_up_exactly_once(worker, org):
    wallet = factories.WalletFactory(organization=org, low_balance_threshold=Decimal("5"))
    action = factories.ActionFactory(
        organization=org, type="wallet_topup", config={"wallet_id": wallet.pk, "amount": "20.00", "currency": "EUR"}
    )
    factories.RuleFactory(organization=org, name="Top up", event_key=WALLET_LOW_BALANCE, jsonlogic={"==": [1, 1]},
                          actions=[action])  # fmt: skip
    wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="credit", amount=Decimal("10"), currency="EUR",
                idempotency_key="opening")  # fmt: skip
    wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="debit", amount=Decimal("6"), currency="EUR",
                idempotency_key="usage")  # fmt: skip

    def balance() -> Decimal:
        return Wallet.objects.get(pk=wallet.pk).balance

    # The top-up commits inside the attempt, the delivery's outcome just after it.
    wait_for(
        lambda: balance() == Decimal("24") and Delivery.objects.filter(status="succeeded").exists(),
        60,
        worker,
        "the top-up",
    )
    [delivery] = Delivery.objects.filter(status="succeeded")

    # The same delivery attempted again (a redelivered task after its worker lost the ack).
    Delivery.objects.filter(pk=delivery.pk).update(status="retrying", next_attempt_at=timezone.now())
    enqueue(DELIVERY_ATTEMPT, delivery.pk)
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).status == "succeeded", 60, worker, "the second attempt")
    assert Delivery.objects.get(pk=delivery.pk).result["created"] is False
    assert WalletTransaction.objects.filter(wallet=wallet, kind="topup").count() == 1
    assert balance() == Decimal("24")
