"""Limits shared by every worker process: `rate_limit` (starts per period) and `concurrency` (running at once).

Both are checked in Redis, under the pipeline's hash tag, before a worker reads:
entries it may not start yet stay unread in the stream, where any worker can
take them once allowed, and nothing is held past its lease. The rate limit is
GCRA by Redis's clock, paced evenly (one start every ``per / tasks``), so any
window of ``per`` sees at most ``tasks`` + 1 starts. Concurrency permits are
members of a sorted set scored by expiry; the holder pushes the expiry a lease
ahead every fifth of a lease, as its heartbeat does, so a dead worker's permits
come back when its lease runs out (when its entries are taken over, too).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from buraq import streams
from buraq.config import Pipeline

log = logging.getLogger("buraq.limits")

# How often a worker asks again for a permit while the cap is full (with jitter, so workers do not align).
PERMIT_POLL = 0.05


class DispatchGate:
    """Holds one worker's starts back until the pipeline's shared limits allow them."""

    def __init__(self, redis: aioredis.Redis, pipeline: Pipeline, consumer: str) -> None:
        self._redis = redis
        self._pipeline = pipeline
        self._consumer = consumer
        self._names = itertools.count()
        self.held: set[str] = set()

    @classmethod
    def build(cls, redis: aioredis.Redis, pipeline: Pipeline, consumer: str) -> DispatchGate | None:
        """The gate for ``pipeline``, or None when it sets neither limit."""
        if pipeline.rate_limit is None and pipeline.concurrency is None:
            return None
        return cls(redis, pipeline, consumer)

    async def acquire(self, wanted: int, stopping: asyncio.Event) -> list[str]:
        """Wait until at least one start is allowed; return one permit per allowed start ([] once stopping).

        A permit is the name of a concurrency permit, or "" for a pipeline without `concurrency`.
        """
        permits = [""] * wanted
        if self._pipeline.concurrency is not None:
            permits = list(await self._take_permits(wanted, stopping))
            if not permits:
                return []
        if self._pipeline.rate_limit is None:
            return permits
        try:
            if not await self._take_rate(stopping):
                await self.release(permits)
                return []
        except BaseException:
            await self.release(permits)
            raise
        await self.release(permits[1:])  # the rate limit grants one start at a time
        return permits[:1]

    async def release(self, permits: list[str]) -> None:
        """Give permits back (a task ended, or a read found fewer entries than it had permits for)."""
        names = [name for name in permits if name]
        if not names:
            return
        self.held.difference_update(names)
        try:
            await streams.permits_release(self._redis, self._pipeline, names)
        except (RedisError, OSError) as exc:
            log.warning("%s: could not give back %d permit(s) (%s); they expire within a lease",
                        self._pipeline.name, len(names), exc)

    async def refresh_forever(self) -> None:
        """Keep this worker's permits alive, every fifth of a lease, until cancelled."""
        while True:
            await asyncio.sleep(self._pipeline.lease / 5)
            if not self.held:
                continue
            try:
                lost = await streams.permits_refresh(self._redis, self._pipeline, sorted(self.held))
            except (RedisError, OSError) as exc:
                log.warning("%s: permit refresh failed (%s)", self._pipeline.name, exc)
                continue
            if lost:
                log.warning("%s: %d concurrency permit(s) expired while their tasks ran (this worker was silent "
                            "for a lease); the cap may be exceeded until they end", self._pipeline.name, len(lost))

    async def _take_permits(self, wanted: int, stopping: asyncio.Event) -> list[str]:
        while not stopping.is_set():
            names = [f"{self._consumer}:{next(self._names)}" for _ in range(wanted)]
            granted = await streams.permits_take(self._redis, self._pipeline, names)
            if granted:
                self.held.update(granted)
                return granted
            await _sleep_unless(stopping, PERMIT_POLL * random.uniform(0.5, 1.5))
        return []

    async def _take_rate(self, stopping: asyncio.Event) -> bool:
        while not stopping.is_set():
            wait = await streams.rate_take(self._redis, self._pipeline)
            if wait <= 0:
                return True
            await _sleep_unless(stopping, wait)
        return False


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except asyncio.TimeoutError:
        pass
