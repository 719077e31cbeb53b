from django.apps import AppConfig

# Billing's keys are declared before the app's services exist: automations' `wallet_topup`
# action and rules on `wallet.low_balance` already name them (docs/automations.md).
WALLET_LOW_BALANCE = "wallet.low_balance"


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from joulepoint.events.keys import event_key_register

        event_key_register(WALLET_LOW_BALANCE)
