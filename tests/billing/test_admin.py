"""Billing in the admin: manual adjustments need a reason and record the admin user; rows of
other organizations stay out of sight."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import WalletTransaction
from tests import factories

pytestmark = pytest.mark.django_db


def test_an_adjustment_records_the_admin_user_and_needs_a_reason(client, org, owner):
    wallet = factories.WalletFactory(organization=org)
    client.force_login(owner)
    url = "/admin/billing/wallettransaction/add/"
    refused = client.post(url, {"wallet": wallet.pk, "amount": "-2.50", "reason": " "})
    assert refused.status_code == 200 and "needs a reason" in refused.content.decode()
    assert WalletTransaction.objects.count() == 0

    done = client.post(url, {"wallet": wallet.pk, "amount": "-2.50", "reason": "meter misread"})
    assert done.status_code == 302, done.content.decode()[:2000]
    row = WalletTransaction.objects.get()
    assert (row.kind, row.amount, row.created_by, row.reason) == ("adjustment", Decimal("-2.5"), owner, "meter misread")
    wallet.refresh_from_db()
    assert wallet.balance == Decimal("-2.5")


def test_the_tariff_list_shows_only_the_users_organizations(client, org, owner, other_org):
    factories.TariffFactory(organization=org, name="Ours")
    factories.TariffFactory(organization=other_org, name="Theirs")
    client.force_login(owner)
    page = client.get("/admin/billing/tariff/").content.decode()
    assert "Ours" in page and "Theirs" not in page
