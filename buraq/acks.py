"""Batch acknowledgements: one XACK round trip for every task that finished meanwhile."""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from buraq import connection, streams
from buraq.backoff import pause_after
from buraq.config import Pipeline

log = logging.getLogger("buraq.acks")


class AckBatcher:
    """Collects finished entry ids and sends them in as few XACKs as the load allows.

    Under light load each ack goes out at once; under heavy load the ids that pile
    up while one XACK is in flight go out together in the next.
    """

    def __init__(self, redis: aioredis.Redis, pipeline: Pipeline) -> None:
        self._redis = redis
        self._pipeline = pipeline
        self._ids: list[str] = []
        self._sending = 0  # ids in the XACK on the wire right now
        self._flusher: asyncio.Task[None] | None = None

    def ack(self, entry_id: str) -> None:
        self._ids.append(entry_id)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    @property
    def unsent(self) -> int:
        """Acknowledgements not yet confirmed by Redis, including those on the wire."""
        return len(self._ids) + self._sending

    async def flush(self) -> None:
        """Wait until every id handed in so far is acknowledged."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        failures = 0
        try:
            while self._ids:
                ids, self._ids = self._ids, []
                self._sending = len(ids)
                try:
                    await streams.ack(self._redis, self._pipeline, ids)
                    failures = 0
                except connection.REDIS_TROUBLE as exc:
                    # Unacknowledged entries stay pending and would run again; keep trying.
                    failures += 1
                    self._sending = 0
                    self._ids[:0] = ids
                    log.warning("%s: XACK of %d entries failed (%s); retrying", self._pipeline.name, len(ids), exc)
                    await asyncio.sleep(pause_after(failures, 0.1, 5.0))
                finally:
                    self._sending = 0
        finally:
            self._flusher = None
