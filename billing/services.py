"""Billing's public services for other apps (the facade they import): automations' `wallet_topup`
action calls `billing.services.wallet_topup(*, organization_id, wallet_id, amount, currency,
idempotency_key, source)`. The implementations live in their concern's module."""

from __future__ import annotations

from billing.statements import statement_generate
from billing.wallets import wallet_move, wallet_topup

__all__ = ["statement_generate", "wallet_move", "wallet_topup"]
