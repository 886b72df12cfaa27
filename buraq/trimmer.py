"""Keep a pipeline's task stream short: trim acknowledged entries once a second.

Acknowledged entries are done with (a retry is a new entry, a DLQ move a copy), so without
trimming the stream, and Redis's memory, would grow by every task ever run. What is removed is
decided atomically in Redis (streams.trim), so any number of workers may trim at once.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from buraq import connection, streams
from buraq.backoff import pause_after, sleep_unless
from buraq.config import Pipeline

log = logging.getLogger("buraq.trimmer")

TRIM_INTERVAL = 1.0


async def trim_once(redis: aioredis.Redis, pipeline: Pipeline, timeout: float = 5.0) -> int:
    """Trim all that can go, a batch per call; -1 on Redis trouble, logged, not raised (the next pass catches up)."""
    removed = 0
    try:
        async with asyncio.timeout(timeout):
            while True:  # a full batch means there is more: go on, a batch at a time
                batch = await streams.trim(redis, pipeline)
                removed += batch
                if batch < streams.TRIM_BATCH:
                    return removed
    except (*connection.REDIS_TROUBLE, asyncio.TimeoutError) as exc:
        log.debug("%s: trimming the stream failed (%s)", pipeline.name, exc)
        return -1


async def trim_forever(redis: aioredis.Redis, pipeline: Pipeline, stopping: asyncio.Event) -> None:
    """Trim every TRIM_INTERVAL until ``stopping`` is set, backing off while Redis is away."""
    failures = 0
    while not stopping.is_set():
        failures = failures + 1 if await trim_once(redis, pipeline) < 0 else 0
        pause = pause_after(failures, TRIM_INTERVAL / 2, 30.0) if failures else TRIM_INTERVAL
        await sleep_unless(stopping, pause)
