"""Costing an account over a range: the preview (nothing written) that statements and prepaid
debits reuse. A range is at most MAX_RANGE_DAYS long (13 months and a bit: a year-on-year bill
fits, a scan of a decade does not)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from billing.cycles import cycle_of, cycles_between
from billing.models import Account
from billing.pricing import Bill, bill_compute
from billing.selectors import account_intervals, account_timezone, holiday_test, tariff_prices

MAX_RANGE_DAYS = 400


class RangeInvalid(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Costing:
    account: Account
    start: datetime
    end: datetime
    bill: Bill
    quality: dict

    def as_dict(self) -> dict:
        bill = self.bill
        return {
            "account": self.account.pk,
            "start": _z(self.start),
            "end": _z(self.end),
            "currency": bill.currency,
            "lines": [line.as_dict() for line in bill.lines],
            "import_kwh": str(bill.import_kwh),
            "export_kwh": str(bill.export_kwh),
            "subtotal": str(bill.subtotal),
            "tax": str(bill.tax),
            "total": str(bill.total),
            "data_quality": self.quality,
        }


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def preview_range(
    *, account: Account, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The range to cost: default from the current cycle's start to now. RangeInvalid names the field."""
    tz = account_timezone(account=account)
    if start is None:
        start = cycle_of(now if end is None else end - timedelta(microseconds=1), cycle_day=account.cycle_day, tz=tz)[0]
    if end is None:
        end = max(now, start)
    if end <= start:
        raise RangeInvalid("end", "must be after start")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise RangeInvalid("end", f"a range is at most {MAX_RANGE_DAYS} days")
    return start, end


def account_cost(*, account: Account, start: datetime, end: datetime, now: datetime | None = None) -> Costing:
    """The bill of [start, end) at the account's tariff (every version that applies), with data
    quality. Reads only. Tenant: the account's organization (its meters are read through it)."""
    now = now or timezone.now()
    tz = account_timezone(account=account)
    intervals, quality = account_intervals(account=account, start=start, end=end, now=now)
    tariff = account.tariff
    bill = bill_compute(
        intervals=intervals,
        versions=tariff_prices(tariff=tariff),
        tz=tz,
        currency=tariff.currency,
        cycles=cycles_between(start, end, cycle_day=account.cycle_day, tz=tz),
        start=start,
        end=end,
        is_holiday=holiday_test(tariff=tariff, start=start, end=end),
    )
    return Costing(account, start, end, bill, quality)


def account_preview(
    *, account: Account, start: datetime | None = None, end: datetime | None = None, now: datetime | None = None
) -> Costing:
    """POST …/accounts/{id}/preview: the bill so far (default: this cycle up to now); nothing is written."""
    now = now or timezone.now()
    start, end = preview_range(account=account, start=start, end=end, now=now)
    return account_cost(account=account, start=start, end=end, now=now)
