"""Statements: an immutable, numbered bill of a closed period, generated once.

`statement_generate` is idempotent per (account, period): a second call answers the first
statement. Numbers are `ST-000001`, … per organization, taken under a lock on the organization
row so two generators never take the same one. For a prepaid account the consumption was
already debited interval by interval (billing.prepaid): the statement records what was, and
settles only the difference (late readings, demand, fixed and minimum charges, tax) on the
wallet, idempotently (key `statement:<id>`), so nothing is debited twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.cycles import last_closed_cycle
from billing.models import Account, Statement, WalletTransaction
from billing.money import round_money
from billing.preview import RangeInvalid, account_cost, preview_range
from billing.selectors import account_timezone
from billing.wallets import wallet_move
from joulepoint.tenancy.models import Organization


def prepaid_debited(*, account: Account, start: datetime, end: datetime) -> Decimal:
    """What the prepaid debits of intervals within [start, end) took from the wallet (positive)."""
    if account.wallet_id is None:
        return Decimal(0)
    taken = Decimal(0)
    prefix = f"prepaid:{account.pk}:"
    for key, amount in WalletTransaction.objects.filter(
        wallet_id=account.wallet_id, idempotency_key__startswith=prefix
    ).values_list("idempotency_key", "amount"):
        first, last = (datetime.fromisoformat(part) for part in key[len(prefix) :].split("/"))
        if start <= first and last <= end:
            taken -= amount
    return taken


@transaction.atomic
def statement_generate(
    *, account: Account, start: datetime | None = None, end: datetime | None = None, now: datetime | None = None
) -> tuple[Statement, bool]:
    """The statement of [start, end) (default: the last closed cycle) and whether it was created
    now. Refuses a period that has not ended (RangeInvalid on `end`). Tenant: the account's."""
    now = now or timezone.now()
    if start is None and end is None:
        start, end = last_closed_cycle(now, cycle_day=account.cycle_day, tz=account_timezone(account=account))
    start, end = preview_range(account=account, start=start, end=end, now=now)
    if end > now:
        raise RangeInvalid("end", "the period has not ended yet: a statement covers a closed period")
    existing = Statement.objects.filter(account=account, period_start=start, period_end=end).first()
    if existing is not None:
        return existing, False
    Organization.objects.select_for_update().get(pk=account.organization_id)
    existing = Statement.objects.filter(account=account, period_start=start, period_end=end).first()
    if existing is not None:
        return existing, False
    costing = account_cost(account=account, start=start, end=end, now=now)
    bill = costing.bill
    last = Statement.objects.filter(organization_id=account.organization_id).order_by("-sequence").first()
    sequence = 1 if last is None else last.sequence + 1
    debited = prepaid_debited(account=account, start=start, end=end)
    statement = Statement.objects.create(
        organization_id=account.organization_id, account=account, sequence=sequence, number=f"ST-{sequence:06d}",
        period_start=start, period_end=end, currency=bill.currency, lines=[line.as_dict() for line in bill.lines],
        data_quality=costing.quality, subtotal=bill.subtotal, tax=bill.tax, total=bill.total,
        prepaid_debited=debited,
    )  # fmt: skip
    remainder = bill.total - debited
    if account.mode == Account.Mode.PREPAID and account.wallet_id and remainder:
        wallet_move(
            organization_id=account.organization_id, wallet_id=account.wallet_id,
            kind=WalletTransaction.Kind.DEBIT if remainder > 0 else WalletTransaction.Kind.REFUND,
            amount=abs(remainder), currency=bill.currency, idempotency_key=f"statement:{statement.pk}",
            reference=f"statement:{statement.number}", source="billing.statements", allow_arrears=True,
        )  # fmt: skip
    return statement, True


def statement_html(*, statement: Statement) -> str:
    """The printable page of a statement (billing/statement.html); totals in the currency's minor
    unit, as the API answers them (the columns keep 4 places)."""
    totals = {
        name: round_money(getattr(statement, name), statement.currency)
        for name in ("subtotal", "tax", "total", "prepaid_debited")
    }
    context = {"statement": statement, "account": statement.account, "totals": totals}
    return render_to_string("billing/statement.html", context)


def _no_fetch(url: str, *args, **kwargs):
    # The page is self-contained; refusing every fetch keeps a renderer on the server from ever
    # reaching a URL (file:// or the network) that a template or a name might carry.
    raise ValueError(f"statement PDFs fetch nothing ({url})")


def statement_pdf(*, statement: Statement) -> bytes:
    """The statement as a PDF, rendered by WeasyPrint from the same page as `statement_html`
    (its text is extractable: the number and the total are searchable)."""
    from weasyprint import HTML  # imported on use: it loads Pango, which only this needs

    return HTML(string=statement_html(statement=statement), url_fetcher=_no_fetch).write_pdf()
