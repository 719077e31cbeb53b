"""What beat runs: prepaid debits of completed intervals, and each account's statement once its
cycle has ended (plus a grace for late readings). Both are idempotent, so a re-run or two
overlapping runs change nothing."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from billing.cycles import last_closed_cycle
from billing.models import Account, Statement
from billing.prepaid import account_prepaid_debit, prepaid_accounts_due
from billing.selectors import account_timezone
from billing.statements import statement_generate

logger = logging.getLogger(__name__)
STATEMENT_GRACE = timedelta(hours=1)


def prepaid_debits_run(*, now: datetime | None = None) -> int:
    """Charge every prepaid account's completed intervals; one account's failure skips only it."""
    now = now or timezone.now()
    written = 0
    for account_id in prepaid_accounts_due(now=now):
        try:
            written += account_prepaid_debit(account_id=account_id, now=now)
        except Exception:
            logger.exception("prepaid debit of account %s failed", account_id)
    return written


def statements_due_run(*, now: datetime | None = None) -> int:
    """Issue the last closed cycle's statement of each account that has none (cycles that ended
    before the account existed are not billed)."""
    now = now or timezone.now()
    issued = 0
    for account in Account.objects.select_related("site", "tariff").order_by("pk"):
        start, end = last_closed_cycle(
            now - STATEMENT_GRACE, cycle_day=account.cycle_day, tz=account_timezone(account=account)
        )
        if (
            end <= account.created_at
            or Statement.objects.filter(account=account, period_start=start, period_end=end).exists()
        ):
            continue
        try:
            _statement, created = statement_generate(account=account, start=start, end=end, now=now)
            issued += created
        except Exception:
            logger.exception("statement of account %s failed", account.pk)
    return issued
