"""Event keys and the in-memory shape of an event handed to subscribers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

DATA_INGESTED = "data.ingested"
PQ_EVENT = "pq.event"
PROTECTION_EVENT = "protection.event"
ALERT_TRIGGERED = "alert.triggered"
WALLET_LOW_BALANCE = "wallet.low_balance"
ML_INFERENCE = "ml.inference"
ANOMALY_DETECTED = "anomaly.detected"
DEMAND_RESPONSE = "demand_response"
PEAK_DETECTED = "peak.detected"

EVENT_KEYS = frozenset(
    {
        DATA_INGESTED,
        PQ_EVENT,
        PROTECTION_EVENT,
        ALERT_TRIGGERED,
        WALLET_LOW_BALANCE,
        ML_INFERENCE,
        ANOMALY_DETECTED,
        DEMAND_RESPONSE,
        PEAK_DETECTED,
    }
)
# Only the high-volume telemetry event may be lost with a crashed process: the readings
# themselves are stored, and every other event is written to the outbox with its cause.
TRANSIENT_KEYS = frozenset({DATA_INGESTED})


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
