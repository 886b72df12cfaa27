"""The pipelines one `buraq serve` process runs right now, and how a reload swaps them.

Each member owns what only it uses (its reader task, its thread pool or its handler processes),
so a pipeline can be added, drained away or restarted with new settings while the others run on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from redis.asyncio import Redis

from buraq.chaining import Chain
from buraq.config import Pipeline
from buraq.engine import Observers, PipelineWorker
from buraq.execution import HandlerRunner
from buraq.limits import DispatchGate
from buraq.plugins import Registry
from buraq.process_pool import ProcessPool

log = logging.getLogger("buraq.fleet")


@dataclass
class Member:
    worker: PipelineWorker
    run: asyncio.Task[None]
    threads: ThreadPoolExecutor | None
    processes: ProcessPool | None

    def close(self) -> None:
        self.run.cancel()
        if self.threads is not None:
            self.threads.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.close()


@dataclass
class Changes:
    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if names]
        return "; ".join(parts) or "nothing changed"


class Fleet:
    def __init__(self, registry: Registry, consumer: str, observers: Observers, plugins_dir: str | None) -> None:
        self._registry = registry
        self.redis: Redis | None = None  # set once Redis answers, before the first start
        self._consumer = consumer
        self._observers = observers
        self._plugins_dir = plugins_dir
        self._generation = 0
        self.members: dict[str, Member] = {}
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @property
    def workers(self) -> list[PipelineWorker]:
        return [member.worker for member in self.members.values()]

    def start(self, pipeline: Pipeline, everyone: Sequence[Pipeline], consumer: str | None = None) -> None:
        """Build the pipeline's worker and executor and start reading (``everyone``: its possible outputs)."""
        handler = self._registry.handler(pipeline.handler)
        threads = processes = None
        if not handler.is_async and pipeline.executor == "process":
            processes = ProcessPool(pipeline.handler, self._plugins_dir, pipeline.pool)
        elif not handler.is_async:
            threads = ThreadPoolExecutor(max_workers=pipeline.pool, thread_name_prefix=f"buraq-{pipeline.name}")
        elif pipeline.executor == "process":
            log.warning("%s: executor: process applies to plain def handlers; %s is async and runs on the "
                        "event loop", pipeline.name, pipeline.handler)
        redis = self._require_redis()
        consumer = consumer or self._consumer
        worker = PipelineWorker(pipeline, HandlerRunner(pipeline, handler, threads, processes),
                                self._registry.codec(pipeline.codec), redis, consumer, self._observers,
                                chain=Chain.build(pipeline, everyone, self._registry.codec, redis),
                                gate=DispatchGate.build(redis, pipeline, consumer))
        run = asyncio.create_task(worker.run(), name=f"read:{pipeline.name}")
        run.add_done_callback(self._reader_ended)
        self.members[pipeline.name] = Member(worker, run, threads, processes)

    def _require_redis(self) -> Redis:
        if self.redis is None:
            raise RuntimeError("Fleet.start before Redis answered")
        return self.redis

    def _reader_ended(self, run: asyncio.Task[None]) -> None:
        """A reader that dies of an error stops the whole process (see runtime), which says why."""
        if not run.cancelled() and run.exception() is not None and not self.failed.done():
            self.failed.set_result(run.exception())

    async def apply(self, pipelines: Sequence[Pipeline], grace: float) -> Changes:
        """Make the running set match ``pipelines``: start the new, drain the removed, restart the changed."""
        wanted = {p.name: p for p in pipelines}
        changes = Changes(added=[n for n in wanted if n not in self.members],
                          removed=[n for n in self.members if n not in wanted],
                          changed=[n for n in wanted if n in self.members and self.members[n].worker.pipeline != wanted[n]])
        for name in changes.added:
            self.start(wanted[name], pipelines)
        retiring = [self._retire(name, grace) for name in changes.removed + changes.changed]
        leftovers = dict(zip(changes.removed + changes.changed, await asyncio.gather(*retiring)))
        for name in changes.changed:
            consumer = None
            if leftovers[name]:
                # The old settings' tasks still run under our consumer name: a new reader under the same
                # name would read them back as its own history and run them twice. A fresh name does not.
                self._generation += 1
                consumer = f"{self._consumer}~{self._generation}"
                log.warning("%s: %d task(s) under the old settings outlived the grace period; the new settings "
                            "start as consumer %s", name, leftovers[name], consumer)
            self.start(wanted[name], pipelines, consumer)
        return changes

    async def _retire(self, name: str, grace: float) -> int:
        """Stop reading, let running tasks finish (up to ``grace``), then leave the group if nothing is left."""
        member = self.members.pop(name)
        member.worker.stop()
        await asyncio.gather(member.run, return_exceptions=True)
        left = await member.worker.drain(grace)
        if left:
            asyncio.create_task(self._leave_when_done(member), name=f"retire:{name}")
            return left
        await member.worker.leave()
        member.close()
        return 0

    async def _leave_when_done(self, member: Member) -> None:
        """Tasks that outlived the grace keep their lease until they end; then the old reader leaves."""
        while await member.worker.drain(60.0):
            pass
        await member.worker.leave()
        member.close()

    def close(self) -> None:
        for member in self.members.values():
            member.close()
