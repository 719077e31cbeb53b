"""The live dashboard's billing card in Debian's chromium (Playwright) on the real ASGI server:
a prepaid account's wallet balance and the cost of its billing cycle so far, from the snapshot,
and the balance following a top-up on the next refresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.wallets import wallet_move
from tests import factories
from tests.e2e.test_live_e2e import http_ingest

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FLAT = [{"name": "flat", "months": [1, 12], "day_types": ["weekday", "weekend"], "start": "00:00", "end": "24:00",
         "rate": "0.25"}]  # fmt: skip


def test_the_dashboard_shows_a_prepaid_accounts_balance_and_cycle_cost(live_url, chromium):
    from playwright.sync_api import expect

    membership = factories.MembershipFactory()
    org = membership.organization
    site = factories.SiteFactory(organization=org, name="E2E Depot", timezone="Europe/Berlin")
    meter = factories.MeterFactory(site=site, name="Grid connection", kind="grid")
    wallet = factories.WalletFactory(organization=org, name="Depot wallet", low_balance_threshold=Decimal("10"))
    wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="credit", amount=Decimal("5.50"), currency="EUR",
                idempotency_key="opening")  # fmt: skip
    tariff = factories.TariffFactory(
        organization=org, versions=[{"valid_from": datetime(2020, 1, 1).date(), "periods": FLAT}]
    )
    # The cycle starts on tomorrow's day of the month: these readings are well inside the current one.
    cycle_day = (datetime.now(UTC).day % 28) + 1
    account = factories.AccountFactory(
        organization=org, site=site, meters=[meter], tariff=tariff, name="Depot (prepaid)", mode="prepaid",
        wallet=wallet, cycle_day=cycle_day,
    )  # fmt: skip
    # 2 kWh from the grid 40 to 20 minutes ago: 2 x 0.25 = 0.50 EUR this cycle.
    now = datetime.now(UTC)
    for minutes, register in ((40, 100.0), (20, 102.0)):
        stamp = (now - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        assert http_ingest(live_url, meter, {"timestamp": stamp, "total_energy": register}).status_code == 201

    browser = chromium()
    page = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US").new_page()
    page.clock.install()  # the 30-second refresh is fast-forwarded below, not waited for
    page.goto(f"{live_url}/dashboard/")
    page.fill("#id_username", membership.user.username)
    page.fill("#id_password", "pw-for-tests")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/dashboard/sites/{site.pk}")
    row = page.locator(f"#accounts li[data-account='{account.pk}']")
    expect(page.locator("#accounts-card")).to_be_visible()
    expect(row).to_contain_text("Depot (prepaid)")
    expect(row.locator(".balance")).to_have_text("Balance €5.50")
    expect(row.locator(".cycle-cost")).to_have_text("This cycle so far €0.50")
    expect(row).to_have_class("low")  # below its 10.00 threshold

    wallet_move(organization_id=org.pk, wallet_id=wallet.pk, kind="topup", amount=Decimal("20"),
                currency="EUR", idempotency_key="topup")  # fmt: skip
    page.clock.run_for(31_000)
    expect(row.locator(".balance")).to_have_text("Balance €25.50", timeout=10_000)
    expect(row).not_to_have_class("low")
