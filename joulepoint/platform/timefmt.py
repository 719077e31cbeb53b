"""Time as the API writes it: UTC ISO 8601 with a `Z` (DESIGN's units), one formatter for every door."""

from __future__ import annotations

from datetime import UTC, datetime


def isoz(moment: datetime | None) -> str | None:
    """`2025-10-16T10:00:00Z` (microseconds when present); None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
