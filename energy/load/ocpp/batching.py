"""MeterValues of many stations stored together: a station's message waits for the batch that
holds it to commit (its CALLRESULT then means "stored"), and one ingest transaction serves every
station that sent while the previous batch was being stored. One store at a time per process:
with thousands of stations, a commit per message was the server's limit (bench/ocpp_stations.py)."""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from energy.load import chargers
from energy.load.models import Charger

MAX_BATCH = 1000


class MeterValuesBatcher:
    def __init__(self, *, max_batch: int = MAX_BATCH):
        self.max_batch = max_batch
        self.queue: asyncio.Queue = asyncio.Queue()

    async def store(self, charger: Charger, meter_values: list[dict]) -> None:
        """Returns once stored; raises ReadingsInvalid when the ingest refused these values."""
        done = asyncio.get_running_loop().create_future()
        await self.queue.put((charger, meter_values, done))
        await done

    async def run(self) -> None:
        while True:
            items = [await self.queue.get()]
            while len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                outcomes = await database_sync_to_async(chargers.chargers_readings_store_many)(
                    items=[(charger, meter_values) for charger, meter_values, _ in items]
                )
            except Exception as exc:  # the database failed the batch: every sender hears of it
                outcomes = [exc] * len(items)
            for (_, _, done), outcome in zip(items, outcomes, strict=True):
                if done.done():
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)
