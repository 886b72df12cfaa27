"""The scheduler every `buraq serve` runs: it fires each schedule's ticks, exactly once overall.

Each pass reads Redis's clock and every schedule's "last fired" mark, plans which ticks
to fire (schedules.plan, under the misfire policy) and fires them with one Lua step that
compares and moves the mark: of several schedulers racing for a tick, one moves the mark
and enqueues, the others find their view stale and plan again. Nothing fires before its
tick by Redis's clock, whatever the local clock says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from buraq import connection, schedules, streams
from buraq.backoff import sleep_unless
from buraq.config import Pipeline
from buraq.errors import BuraqError
from buraq.plugins import Registry
from buraq.schedules import Schedule

log = logging.getLogger("buraq.scheduler")

# The longest the scheduler sleeps between passes, so a changed mark or clock is seen soon.
MAX_SLEEP = 1.0


@dataclass(frozen=True)
class Job:
    pipeline: Pipeline
    schedule: Schedule
    payload: bytes  # encoded once by the pipeline's codec


class Scheduler:
    def __init__(self, redis: aioredis.Redis, jobs: Sequence[Job]) -> None:
        self._redis = redis
        self._jobs = list(jobs)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fire ticks until ``stopping`` is set; Redis trouble only delays ticks (misfire policy applies)."""
        while self._jobs and not stopping.is_set():
            try:
                pause = await self.run_once()
            except connection.REDIS_TROUBLE as exc:
                log.warning("scheduler pass failed (%s); trying again", exc)
                pause = MAX_SLEEP
            await sleep_unless(stopping, pause)

    async def run_once(self) -> float:
        """One pass over every schedule; returns seconds until the next tick is due (at most MAX_SLEEP)."""
        pause = MAX_SLEEP
        by_pipeline: dict[str, list[Job]] = {}
        for job in self._jobs:
            by_pipeline.setdefault(job.pipeline.name, []).append(job)
        for jobs in by_pipeline.values():
            pause = min(pause, await self._pass_over(jobs))
        return max(0.005, pause)

    async def _pass_over(self, jobs: list[Job]) -> float:
        """Fire one pipeline's due schedules, by the clock of the Redis node holding its keys."""
        now = await streams.redis_time(self._redis, jobs[0].pipeline)
        next_due = now + round(MAX_SLEEP * 1000)
        marks = await streams.schedule_marks(self._redis, jobs[0].pipeline, [j.schedule.name for j in jobs])
        for job in jobs:
            try:
                last = await self._fire_due(job, marks[job.schedule.name], now)
                next_due = min(next_due, schedules.next_tick(job.schedule, last))
            except connection.REDIS_TROUBLE:
                raise
            except Exception:  # one broken schedule must not stop the others
                log.exception("%s: schedule %s (%s) failed; the others go on", job.pipeline.name,
                              job.schedule.name, job.schedule.describe())
        return (next_due - now) / 1000.0

    async def _fire_due(self, job: Job, last: int | None, now: int) -> int:
        """Fire what is due for one schedule; return its mark as this pass leaves it."""
        schedule = job.schedule
        if last is None:  # first sight: start from now, without back-filling the past
            start = schedules.latest_tick_at_or_before(schedule, now)
            await streams.fire_ticks(self._redis, job.pipeline, schedule.name, None, start, [], schedule.overlap,
                                     job.payload)
            return start
        ticks, new_last, missed = schedules.plan(schedule, last, now)
        if new_last == last:
            return last
        status, fired, skipped = await streams.fire_ticks(self._redis, job.pipeline, schedule.name, last, new_last,
                                                          ticks, schedule.overlap, job.payload)
        if status == "ok":
            log.info("%s: schedule %s (%s) fired %d task(s)%s%s", job.pipeline.name, schedule.name,
                     schedule.describe(), fired, f", skipped {skipped} (previous run still going)" if skipped else "",
                     f"; {missed} tick(s) had been missed while no scheduler ran (misfire: {schedule.misfire})"
                     if missed > 0 else "")
            return new_last
        return last  # 'stale': another scheduler fired it; 'early': Redis's clock says not yet


def jobs_for(pipelines: Sequence[Pipeline], registry: Registry) -> list[Job]:
    """Each schedule with its payload encoded once, by its pipeline's codec."""
    jobs = []
    for pipeline in pipelines:
        for schedule in pipeline.schedule:
            try:
                payload = registry.codec(pipeline.codec).encode(schedule.payload)
            except Exception as exc:
                raise BuraqError(f"{pipeline.source}: schedule {schedule.name}: the {pipeline.codec} codec "
                                 f"cannot encode its payload: {exc}") from None
            jobs.append(Job(pipeline, schedule, payload))
    return jobs
