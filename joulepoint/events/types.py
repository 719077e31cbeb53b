"""The in-memory shape of an event handed to subscribers (keys: joulepoint.events.keys)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Event:
    organization_id: int
    key: str
    payload: dict
    source: str
    occurred_at: datetime
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def as_dict(self) -> dict:
        return {
            "id": str(self.id),
            "organization_id": self.organization_id,
            "key": self.key,
            "payload": self.payload,
            "source": self.source,
            "occurred_at": self.occurred_at.isoformat(),
        }
