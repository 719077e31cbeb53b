"""Parsing of analytics query parameters: the subject, the time range, the interval, the zone.

Every error is an `AnalyticsParamError` (a 400 with a message naming the parameter); a subject
of another organization is a 404, exactly like a missing one.

Subjects: exactly one of `meter=`, `group=` or `account=`, resolved through the registry of
energy.analytics.subjects; a kind no app serves yet (`account=` until billing registers it)
answers 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import exceptions, status

from energy.analytics.subjects import SUBJECT_RESOLVERS, Subject, SubjectUnavailable, TimeRange, subject_for
from energy.models import READING_FIELDS

# Intervals the API accepts, in seconds ("1d" is a local calendar day, not 86,400 s).
INTERVALS: dict[str, int] = {"1min": 60, "5min": 300, "15min": 900, "1h": 3600, "1d": 86400}
BIGINT_MAX = 2**63 - 1
# Query instants outside these bounds are refused: ranges, local days and forecast horizons are
# computed from them, and near year 1 or 9999 that arithmetic overflows. Readings start in 2000.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class AnalyticsParamError(exceptions.APIException):
    """A bad analytics parameter: 400 with `detail` and the offending `param`."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_parameter"

    def __init__(self, param: str, message: str):
        super().__init__(detail=message)
        self.param = param
        self.extra = {"param": param}


def parse_id(value: str, param: str) -> int:
    try:
        pk = int(value)
    except (TypeError, ValueError):
        raise AnalyticsParamError(param, f"{param} must be a positive integer id.") from None
    if not 1 <= pk <= BIGINT_MAX:
        raise AnalyticsParamError(param, f"{param} must be a positive integer id.")
    return pk


def subject_resolve(*, organization, query: Mapping[str, str]) -> Subject:
    """The subject named by exactly one of meter=, group=, account=."""
    given = [kind for kind in SUBJECT_RESOLVERS if query.get(kind) not in (None, "")]
    if len(given) != 1:
        names = ", ".join(f"{kind}=" for kind in SUBJECT_RESOLVERS)
        raise AnalyticsParamError("meter", f"Name exactly one subject: {names}")
    kind = given[0]
    try:
        return subject_for(organization=organization, kind=kind, pk=parse_id(query[kind], kind))
    except SubjectUnavailable as exc:
        raise AnalyticsParamError(kind, str(exc)) from None


def parse_tz(value: str | None, default: str) -> ZoneInfo:
    name = value or default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise AnalyticsParamError(
            "tz", f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin."
        ) from None


# Not tenancy's UtcDateTimeField: it reads naive values in the active zone, not tz=, and rejects DST-ambiguous ones.
def parse_instant(value: str, param: str, tz: ZoneInfo) -> datetime:
    """ISO 8601 date-time (naive values are local to `tz`) or a date (local midnight)."""
    value = value.strip()
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            day = parse_date(value)
            if day is None:
                raise ValueError
            parsed = datetime(day.year, day.month, day.day)
    except (ValueError, OverflowError):
        raise AnalyticsParamError(param, f"{param} must be an ISO 8601 date or date-time; got {value!r}.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        instant = parsed.astimezone(UTC)
    except OverflowError:
        raise AnalyticsParamError(param, f"{param} is out of range.") from None
    if not EARLIEST <= instant <= LATEST:
        raise AnalyticsParamError(param, f"{param} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}.")
    return instant


def parse_range(
    query: Mapping[str, str],
    *,
    tz: ZoneInfo,
    default: timedelta,
    max_days: int | None = None,
    max_hint: str = "",
    now: datetime | None = None,
) -> TimeRange:
    """`start`/`end` (end exclusive); missing ones default to [end - default, now)."""
    now = now or timezone.now()
    end = parse_instant(query["end"], "end", tz) if query.get("end") else None
    start = parse_instant(query["start"], "start", tz) if query.get("start") else None
    if end is None:
        end = start + default if start is not None else now
    if start is None:
        start = end - default
    if end <= start:
        raise AnalyticsParamError("end", "end must be after start.")
    limit = max_days if max_days is not None else settings.ANALYTICS_MAX_RANGE_DAYS
    if end - start > timedelta(days=limit):
        raise AnalyticsParamError("end", f"The range is longer than {limit} days{max_hint}.")
    return TimeRange(start=start, end=end)


def parse_interval(value: str | None, *, allowed: tuple[str, ...], default: str) -> str:
    interval = value or default
    if interval not in allowed:
        raise AnalyticsParamError("interval", f"Unknown interval {interval!r}; use one of: {', '.join(allowed)}.")
    return interval


def parse_fields(value: str | None, *, default: tuple[str, ...]) -> list[str]:
    if not value:
        return list(default)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in READING_FIELDS]
    if unknown or not names:
        raise AnalyticsParamError(
            "fields", f"Unknown field(s) {', '.join(unknown) or '(none)'}; choose from: {', '.join(READING_FIELDS)}."
        )
    return list(dict.fromkeys(names))


def parse_int(value: str | None, param: str, *, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise AnalyticsParamError(param, f"{param} must be an integer between {low} and {high}.") from None
    if not low <= number <= high:
        raise AnalyticsParamError(param, f"{param} must be between {low} and {high}; got {number}.")
    return number


def parse_choice(value: str | None, param: str, *, choices: tuple[str, ...], default: str) -> str:
    choice = value or default
    if choice not in choices:
        raise AnalyticsParamError(param, f"Unknown {param} {choice!r}; use one of: {', '.join(choices)}.")
    return choice
