"""What an analytics query is about and when: the subject (meters of one organization, with their
zone), the time range, and the time grid the rollups and the analytics share.

Subject kinds are a registry: `meter` and `group` here; the billing app registers `account` (an
account → its meters and zone) from its AppConfig.ready() with `subject_resolver_register`; until
it does, `account` is "not available yet". A subject of another organization is an Http404,
exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.http import Http404

from energy.models import Meter, MeterGroup


class SubjectUnavailable(Exception):
    """A subject kind that is named but that no installed app serves yet."""


@dataclass
class Subject:
    """What an analytics query is about: one or more meters of one organization."""

    kind: str  # "meter", "group" or "account"
    id: int
    name: str
    meters: list[Meter] = field(default_factory=list)
    timezone: str = "UTC"

    @property
    def meter_ids(self) -> list[int]:
        return [meter.pk for meter in self.meters]

    def as_dict(self) -> dict:
        return {"type": self.kind, "id": self.id, "name": self.name, "meter_ids": self.meter_ids}


SubjectResolver = Callable[..., Subject]


def _common_timezone(meters: list[Meter]) -> str:
    zones = {meter.site.timezone for meter in meters}
    return zones.pop() if len(zones) == 1 else "UTC"


def _resolve_meter(*, organization, pk: int) -> Subject:
    meter = Meter.objects.for_org(organization).select_related("site").filter(pk=pk).first()
    if meter is None:
        raise Http404("No such meter.")
    return Subject(kind="meter", id=meter.pk, name=meter.name, meters=[meter], timezone=meter.site.timezone)


def _resolve_group(*, organization, pk: int) -> Subject:
    group = MeterGroup.objects.for_org(organization).filter(pk=pk).first()
    if group is None:
        raise Http404("No such meter group.")
    # for_org again on the members: a group only ever holds its organization's meters, but
    # the analytics must not trust that.
    meters = list(Meter.objects.for_org(organization).filter(groups=group).select_related("site").order_by("pk"))
    return Subject(kind="group", id=group.pk, name=group.name, meters=meters, timezone=_common_timezone(meters))


def _account_unavailable(*, organization, pk: int) -> Subject:
    raise SubjectUnavailable("billing accounts are not available yet; use meter= or group=.")


SUBJECT_RESOLVERS: dict[str, SubjectResolver] = {
    "meter": _resolve_meter,
    "group": _resolve_group,
    "account": _account_unavailable,
}


def subject_resolver_register(kind: str, resolver: SubjectResolver) -> None:
    """Plug in a subject kind (billing: `account`); `resolver(organization=, pk=)` → Subject or Http404."""
    SUBJECT_RESOLVERS[kind] = resolver


def subject_for(*, organization, kind: str, pk: int) -> Subject:
    """The subject of `kind` with id `pk` of `organization`: Http404 when missing or foreign,
    SubjectUnavailable when no app serves the kind."""
    return SUBJECT_RESOLVERS[kind](organization=organization, pk=pk)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def local_days(time_range: TimeRange, tz: ZoneInfo) -> TimeRange:
    """Widen a range to whole local days."""
    first = time_range.start.astimezone(tz).date()
    last = (time_range.end - timedelta(microseconds=1)).astimezone(tz).date()
    return TimeRange(local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz))


def whole_hour_offsets(tz: ZoneInfo, time_range: TimeRange) -> bool:
    """Whether every local hour in the range is a whole UTC hour (hourly rollups tile local hours
    and days): the offset at the start, the end and every local midnight between them."""
    first = time_range.start.astimezone(tz).date()
    last = time_range.end.astimezone(tz).date()
    moments = [time_range.start, time_range.end]
    moments += [local_midnight(first + timedelta(days=n), tz) for n in range((last - first).days + 1)]
    return all(moment.astimezone(tz).utcoffset() % timedelta(hours=1) == timedelta(0) for moment in moments)


@dataclass
class TimeRange:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def floor_time(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def ceil_time(moment: datetime, seconds: int) -> datetime:
    floored = floor_time(moment, seconds)
    return floored if floored == moment else floored + timedelta(seconds=seconds)
