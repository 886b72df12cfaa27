"""Leases: how live workers keep their tasks, and how a dead worker's tasks find a new one.

Every worker heartbeats each pipeline every fifth of its ``lease``: it marks itself
alive in the pipeline's consumers hash (expiry by Redis time) and resets the idle
time of the entries it is running (``XCLAIM ... JUSTID``, which counts no delivery).
The heartbeat goes on while a worker drains, so a slow drain is never mistaken for death.

Every worker also scans the pending entries, cursor to the end: it takes over those
whose owner's lease ran out, or that sat idle past the lease, but never more than
it has free slots for. Taking over counts a delivery, which is how a task that kills
its worker every time still reaches the DLQ after its attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from buraq import connection, streams
from buraq.backoff import sleep_unless
from buraq.config import Pipeline

log = logging.getLogger("buraq.leases")

TakenEntry = tuple[str, dict[bytes, bytes] | None, int]


class Leases:
    def __init__(self, redis: aioredis.Redis, pipeline: Pipeline, consumer: str,
                 running: Callable[[], Sequence[str]], free_slots: Callable[[], int],
                 take_over: Callable[[list[TakenEntry]], None]) -> None:
        self._redis = redis
        self._pipeline = pipeline
        self._consumer = consumer
        self._running = running
        self._free_slots = free_slots
        self._take_over = take_over
        self.heartbeat_interval = pipeline.lease / 5
        self.reclaim_interval = min(1.0, max(0.2, pipeline.lease / 5))

    async def beat(self) -> None:
        """One heartbeat; warns about entries another worker took over while this one ran them."""
        running = self._running()
        lost = await streams.heartbeat(self._redis, self._pipeline, self._consumer, running)
        log.debug("%s: heartbeat for %d running entries", self._pipeline.name, len(running))
        if lost:
            log.warning("%s: %d running task(s) were taken over by another worker (this one looked dead "
                        "for a lease); they may run twice: %s", self._pipeline.name, len(lost), ", ".join(lost[:5]))

    async def heartbeat_forever(self) -> None:
        """Heartbeat until cancelled, through Redis trouble."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.beat()
            except connection.REDIS_TROUBLE as exc:
                log.warning("%s: heartbeat failed (%s)", self._pipeline.name, exc)

    async def reclaim_until(self, stopping: asyncio.Event) -> None:
        """Take over dead workers' entries while there are free slots, until ``stopping`` is set."""
        cursor = "-"
        while not stopping.is_set():
            pause = self.reclaim_interval * random.uniform(0.8, 1.2)
            free = self._free_slots()
            if free > 0:
                try:
                    cursor, taken = await streams.reclaim(self._redis, self._pipeline, self._consumer, cursor, free)
                    if taken:
                        log.debug("%s: took over %s", self._pipeline.name,
                                  ", ".join(f"{entry_id} (delivery {count})" for entry_id, _, count in taken))
                        log.info("%s: took over %d task(s) from workers that stopped answering",
                                 self._pipeline.name, len(taken))
                        self._take_over(taken)
                    if cursor != "-":
                        pause = 0  # more of the pending list to look at: go on now
                except connection.REDIS_TROUBLE as exc:
                    log.warning("%s: reclaim scan failed (%s)", self._pipeline.name, exc)
            await sleep_unless(stopping, pause)

    async def leave(self) -> None:
        """Stop being alive for this pipeline: leftovers become claimable at once."""
        await streams.leave(self._redis, self._pipeline, self._consumer)
