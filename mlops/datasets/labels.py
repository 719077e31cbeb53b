"""Dataset labels: what happened on a meter during each step, from power quality events,
protection events and timeline annotations, as columns beside the features (a supervised
anomaly model learns from them; an unsupervised one is judged against them).

A step `ts` covers [ts, ts + interval). A PQ event labels every step it overlaps (from its first
violating reading to its end, or to its last violating reading while open); a protection event
or an annotation labels the step it falls in. Labels only land on steps with data (a dataset
has no rows for silent steps). Each source adds a 0/1 flag and the text of what labelled it:

| label | columns |
|---|---|
| `pq_events` | `label_pq_event`, `label_pq_kinds` (e.g. `sag,thd`) |
| `protection_events` | `label_protection_event`, `label_protection_kinds` (e.g. `trip`) |
| `annotations` | `label_annotation`, `label_annotation_text` (texts joined by ` | `) |

Reads go through energy's selectors and its annotation reader seam (automations fills it in):
mlops reaches into neither app's models. `label_columns` itself is pure.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from energy.analytics.annotations import annotations_read
from energy.power_quality.selectors import pq_event_spans, protection_event_times
from mlops.errors import MlopsInvalid

LABELS = {
    "pq_events": "label_pq_event (0/1) and label_pq_kinds: power quality events overlapping the step",
    "protection_events": "label_protection_event (0/1) and label_protection_kinds: trips, leakage, breaker moves",
    "annotations": "label_annotation (0/1) and label_annotation_text: timeline annotations in the step",
}
COLUMNS = {
    "pq_events": ("label_pq_event", "label_pq_kinds", ","),
    "protection_events": ("label_protection_event", "label_protection_kinds", ","),
    "annotations": ("label_annotation", "label_annotation_text", " | "),
}
MAX_ANNOTATIONS = 100_000


def labels_read(
    *, organization_id: int, labels: list[str], meter_ids: list[int], start: datetime, end: datetime, step_seconds: int
) -> dict[str, list[tuple[int, pd.Timestamp, str]]]:
    """label → [(meter id, step, text)] for the steps the organization's events fall in."""
    step = pd.Timedelta(seconds=step_seconds)
    found: dict[str, list[tuple[int, pd.Timestamp, str]]] = {}
    if "pq_events" in labels:
        rows = []
        for span in pq_event_spans(organization_id=organization_id, meter_ids=meter_ids, start=start, end=end):
            first = pd.Timestamp(max(span["start"], start)).floor(step)
            last = pd.Timestamp(min(span["last"], end)).floor(step)
            rows += [(span["meter_id"], ts, span["kind"]) for ts in pd.date_range(first, last, freq=step)]
        found["pq_events"] = rows
    if "protection_events" in labels:
        events = protection_event_times(organization_id=organization_id, meter_ids=meter_ids, start=start, end=end)
        found["protection_events"] = [
            (event["meter_id"], pd.Timestamp(event["occurred_at"]).floor(step), event["kind"]) for event in events
        ]
    if "annotations" in labels:
        items, truncated = annotations_read(
            organization_id=organization_id, meter_ids=meter_ids, start=start, end=end, limit=MAX_ANNOTATIONS
        )
        if truncated:
            raise MlopsInvalid("labels", f"More than {MAX_ANNOTATIONS:,} annotations in range: narrow the dataset.")
        found["annotations"] = [
            (item["meter_id"], pd.Timestamp(item["ts"]).floor(step), item["text"]) for item in items
        ]
    return found


def _joiner(separator: str):
    """Kinds read best sorted and once each (`sag,swell`); annotation texts in time order."""
    if separator == ",":
        return lambda texts: separator.join(sorted(set(texts)))
    return lambda texts: separator.join(dict.fromkeys(texts))


def label_columns(frame: pd.DataFrame, found: dict[str, list[tuple[int, pd.Timestamp, str]]]) -> pd.DataFrame:
    """`frame` (meter_id, ts, …) with each label's flag and text columns (0 and "" where none)."""
    frame = frame.copy()
    for label, rows in found.items():
        flag, text, separator = COLUMNS[label]
        if rows:
            marks = pd.DataFrame(rows, columns=["meter_id", "ts", text])
            marks["meter_id"] = marks["meter_id"].astype(frame["meter_id"].dtype)
            marks["ts"] = pd.to_datetime(marks["ts"], utc=True).astype(frame["ts"].dtype)
            joined = marks.groupby(["meter_id", "ts"])[text].agg(_joiner(separator)).reset_index()
            joined[flag] = 1
            frame = frame.merge(joined, on=["meter_id", "ts"], how="left")
            frame[text] = frame[text].fillna("").astype(str)
            frame[flag] = frame[flag].fillna(0).astype("int8")
        else:
            frame[text] = ""
            frame[flag] = pd.Series(0, index=frame.index, dtype="int8")
        # The flag first, then its text: columns read as "is it labelled, and by what".
        frame = frame[[c for c in frame.columns if c not in (flag, text)] + [flag, text]]
    return frame
