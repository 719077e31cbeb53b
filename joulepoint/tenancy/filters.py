from __future__ import annotations

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

BIGINT_MAX = 2**63 - 1


class IdField(forms.IntegerField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


class IdFilter(django_filters.Filter):
    """Filters a foreign key by a positive 64-bit id.

    Not a choice field over every row, which would tell a tenant whether another tenant's id
    exists; and bounded, so an id too large for the database is a 400, not a driver overflow.
    """

    field_class = IdField


class UtcDateTimeField(IsoDateTimeField):
    """An ISO 8601 instant, normalised to UTC: PostgreSQL refuses offsets beyond ±15:59, which
    Python (and so the query parameter) allows."""

    def clean(self, value):
        cleaned = super().clean(value)
        if cleaned is None:
            return None
        try:
            return cleaned.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("This instant is outside the supported range.") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField
