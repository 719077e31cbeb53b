"""Billing rows: tariffs and their dated versions, accounts, wallets with their ledger, statements."""

from billing.models.accounts import Account
from billing.models.statements import Statement
from billing.models.tariffs import Tariff, TariffVersion
from billing.models.wallets import Wallet, WalletTransaction

__all__ = ["Account", "Statement", "Tariff", "TariffVersion", "Wallet", "WalletTransaction"]
