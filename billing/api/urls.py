"""Billing routes, mounted at /api/energy/ (the guide's paths). Every path answers with and
without a trailing slash (no redirects)."""

from __future__ import annotations

from billing.api import views
from joulepoint.platform.api import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("billing/tariffs", views.TariffViewSet, basename="billing-tariff")
router.register("billing/accounts", views.AccountViewSet, basename="billing-account")
router.register("billing/statements", views.StatementViewSet, basename="billing-statement")
router.register("wallets", views.WalletViewSet, basename="wallet")
router.register("wallet-transactions", views.WalletTransactionViewSet, basename="wallet-transaction")

urlpatterns = router.urls
