"""Limits shared by every worker process: `rate_limit` (starts per period) and `concurrency` (running at once).

Both are checked in Redis, under the pipeline's hash tag, before a worker reads:
entries it may not start yet stay unread in the stream, where any worker can
take them once allowed, and nothing is held past its lease. The rate limit is
GCRA by Redis's clock, paced evenly (one start every ``per / tasks``), so any
window of ``per`` sees at most ``tasks`` + 1 starts; one call hands out the slots
of the next ``LOOK_AHEAD`` seconds, and each task waits in the worker for its own. Concurrency permits are
members of a sorted set scored by expiry; the holder pushes the expiry a lease
ahead every fifth of a lease, as its heartbeat does, so a dead worker's permits
come back when its lease runs out (when its entries are taken over, too).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from dataclasses import dataclass

import redis.asyncio as aioredis

from buraq import connection, streams
from buraq.backoff import sleep_unless
from buraq.config import Pipeline

log = logging.getLogger("buraq.limits")

# How often a worker asks again for a permit while the cap is full (with jitter, so workers do not align).
PERMIT_POLL = 0.05
# How far ahead one rate-limit call may hand out start slots: fewer round trips at high rates,
# and an entry read early waits at most this long in the worker (far below any lease).
LOOK_AHEAD = 0.05


@dataclass(frozen=True)
class Admission:
    """Leave to start one task: its concurrency permit ("" without `concurrency`) and its rate slot."""

    permit: str
    not_before: float = 0.0  # event-loop time of its rate-limit slot

    async def wait_turn(self) -> None:
        delay = self.not_before - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


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

    async def acquire(self, wanted: int, stopping: asyncio.Event) -> list[Admission]:
        """Wait until at least one start is allowed; return one Admission per allowed start ([] once stopping)."""
        permits = [""] * wanted
        if self._pipeline.concurrency is not None:
            permits = list(await self._take_permits(wanted, stopping))
            if not permits:
                return []
        if self._pipeline.rate_limit is None:
            return [Admission(permit) for permit in permits]
        try:
            slots, first = await self._take_rate(len(permits), stopping)
        except BaseException:
            await self.release(permits)
            raise
        await self.release(permits[slots:])
        tasks, per = self._pipeline.rate_limit
        start = asyncio.get_running_loop().time() + first
        return [Admission(permit, start + index * per / tasks) for index, permit in enumerate(permits[:slots])]

    async def release(self, permits: list[str]) -> None:
        """Give permits back (a task ended, or a read found fewer entries than it had permits for)."""
        names = [name for name in permits if name]
        if not names:
            return
        self.held.difference_update(names)
        try:
            await streams.permits_release(self._redis, self._pipeline, names)
        except connection.REDIS_TROUBLE as exc:
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
            except connection.REDIS_TROUBLE as exc:
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
            await sleep_unless(stopping, PERMIT_POLL * random.uniform(0.5, 1.5))
        return []

    async def _take_rate(self, wanted: int, stopping: asyncio.Event) -> tuple[int, float]:
        """(slots, seconds until the first); (0, 0) once stopping."""
        while not stopping.is_set():
            slots, seconds = await streams.rate_take(self._redis, self._pipeline, wanted, LOOK_AHEAD)
            if slots:
                return slots, seconds
            await sleep_unless(stopping, seconds)
        return 0, 0.0

