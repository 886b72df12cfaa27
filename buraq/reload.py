"""SIGHUP: re-read the pipeline files and, only if they are valid, swap them in.

Added pipelines start, removed ones drain and leave, changed ones drain and start again with
the new settings; the scheduler restarts with the new schedules. A file with a mistake is
logged with its file and line, and everything that ran before runs on untouched. Plugins are
not reloaded (Python cannot safely unload code): a new handler needs a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from buraq.config import Pipeline, load_pipelines
from buraq.errors import BuraqError, ConfigError
from buraq.fleet import Changes, Fleet
from buraq.plugins import Registry
from buraq.scheduler import Scheduler, jobs_for

log = logging.getLogger("buraq.reload")


class Reloader:
    def __init__(self, paths: Sequence[str], registry: Registry, fleet: Fleet, current: list[Pipeline],
                 grace: float) -> None:
        self._paths = list(paths)
        self._registry = registry
        self._fleet = fleet
        self._current = current  # the listener reads this list: it is updated in place
        self._grace = grace
        self._wanted = asyncio.Event()
        self._stopping: asyncio.Event | None = None
        self._scheduler: asyncio.Task[None] | None = None

    def request(self) -> None:
        log.info("SIGHUP: reloading %s", ", ".join(self._paths))
        self._wanted.set()

    def start_scheduler(self, scheduler: Scheduler, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self._scheduler = asyncio.create_task(scheduler.run(stopping), name="scheduler")

    async def stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)

    async def run_forever(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()  # a SIGHUP during this reload asks for one more afterwards
            try:
                await self.reload_once()
            except Exception:  # say so, and stay ready for the next SIGHUP
                log.exception("reload failed part way; the pipelines that started run on, and the next SIGHUP "
                              "tries again")

    async def reload_once(self) -> Changes | None:
        """Load, check and apply the files; None when they were refused."""
        pipelines = checked_pipelines(self._paths, self._registry)
        if pipelines is None:
            return None
        jobs = jobs_for(pipelines, self._registry)
        changes = await self._fleet.apply(pipelines, self._grace)
        self._current[:] = pipelines
        if changes and self._stopping is not None and not self._stopping.is_set() and self._fleet.redis is not None:
            await self.stop_scheduler()
            self.start_scheduler(Scheduler(self._fleet.redis, jobs), self._stopping)
        log.info("reloaded: %s", changes.describe())
        return changes


def checked_pipelines(paths: Sequence[str], registry: Registry) -> list[Pipeline] | None:
    """The pipelines the files define now, or None (after logging every problem with file and line)."""
    try:
        pipelines = load_pipelines(paths, handlers=registry.handlers, codecs=registry.codecs,
                                   options_schemas=registry.options_schemas())
        if not pipelines:
            raise BuraqError(f"no pipelines found in {', '.join(paths)}")
        jobs_for(pipelines, registry)  # a schedule payload its codec cannot encode
    except ConfigError as error:
        log.error("reload refused; still running the previous pipelines. Problems:\n%s",
                  "\n".join(problem.render() for problem in error.problems))
        return None
    except BuraqError as error:
        log.error("reload refused; still running the previous pipelines: %s", error)
        return None
    return pipelines
