from django.apps import AppConfig

# Billing's keys are declared before the app's services exist: automations' `wallet_topup`
# action and rules on `wallet.low_balance` already name them (docs/automations.md).
WALLET_LOW_BALANCE = "wallet.low_balance"


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Billing plugs into energy's registries; energy never imports billing.
        import billing.tasks  # noqa: F401 - services queue tasks by name; the names must be registered
        from billing.demo import billing_demo_extend
        from billing.subjects import account_subject
        from billing.summaries import site_account_summaries
        from energy.analytics.subjects import subject_resolver_register
        from energy.demo import demo_extension_register
        from energy.live.account_summaries import account_summaries_reader_register
        from joulepoint.events.keys import event_key_register

        event_key_register(WALLET_LOW_BALANCE)
        subject_resolver_register("account", account_subject)
        demo_extension_register("billing", billing_demo_extend)
        # The dashboard shows each account's balance and cycle cost so far.
        account_summaries_reader_register(site_account_summaries)

        from billing.models import Account, Statement, Tariff, TariffVersion, Wallet, WalletTransaction
        from joulepoint.audit.registry import audit_register

        # The audit trail (docs/audit.md). A wallet's balance moves with each ledger movement,
        # which is audited itself (adjustments, top-ups, debits), so the balance is not repeated.
        audit_register(Wallet, exclude_fields=["balance", "low_balance_notified"])
        for model in (Tariff, TariffVersion, Account, WalletTransaction, Statement):
            audit_register(model)
