"""Annotations on a meter's timeline: announcing a new one to the live dashboards."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from automations.models import Annotation
from automations.selectors import ANNOTATION_FIELDS
from energy.live.fanout import live_notice_send
from joulepoint.platform.timefmt import isoz

ANNOTATION_CREATED = "annotation.created"  # a dashboard frame only, not a bus event key


def annotation_announce(*, annotation: Annotation) -> None:
    """After commit, show a new annotation on the live dashboards watching its meter's site
    (energy.live.fanout; the dashboard draws a marker and adds it to the feed). Not a bus event:
    rules must not fire on their own annotations."""
    # The shape the analytics API and the dashboard snapshot give an annotation, plus its site.
    payload = {
        **{name: getattr(annotation, name) for name in ANNOTATION_FIELDS},
        "ts": isoz(annotation.ts),
        "site_id": annotation.meter.site_id,
    }
    transaction.on_commit(
        lambda: live_notice_send(
            organization_id=annotation.organization_id,
            site_id=payload["site_id"],
            key=ANNOTATION_CREATED,
            payload=payload,
            ident=f"annotation:{annotation.pk}",
            occurred_at=annotation.created_at or timezone.now(),
        )
    )
