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


@dataclass(eq=False)  # identity: members live in sets while they retire
class Member:
    worker: PipelineWorker
    run: asyncio.Task[None]
    threads: ThreadPoolExecutor | None
    processes: ProcessPool | None

    def close(self) -> None:
        self.worker.stop()
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
        self.retiring: set[Member] = set()  # removed or changed, still draining
        self._leaving: dict[Member, asyncio.Task[None]] = {}
        self.closing = False
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @property
    def workers(self) -> list[PipelineWorker]:
        return [member.worker for member in self.members.values()]

    def start(self, pipeline: Pipeline, everyone: Sequence[Pipeline], consumer: str | None = None) -> None:
        """Build the pipeline's worker and executor and start reading (``everyone``: its possible outputs)."""
        if self.closing:
            return
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
        await asyncio.gather(*(self._retire(name, grace) for name in changes.removed + changes.changed))
        for name in changes.added + changes.changed:
            if not self.closing:  # a stop came while the old ones drained: start nothing more
                self.start(wanted[name], pipelines, self._free_name(name))
        for member in self.members.values():  # a target's stream, codec or schema may have changed
            member.worker.retarget(Chain.build(member.worker.pipeline, pipelines, self._registry.codec,
                                               self._require_redis()))
        return changes

    def _free_name(self, pipeline: str) -> str | None:
        """Our consumer name, unless a retiring reader of this pipeline still holds it: then a fresh one.

        A new reader under a name whose entries still run would read them back as its own history and
        run them twice, and the old reader's leave would mark the name dead under the new one's feet.
        """
        if not any(m.worker.pipeline.name == pipeline and m.worker.consumer == self._consumer for m in self.retiring):
            return None
        self._generation += 1
        fresh = f"{self._consumer}~{self._generation}"
        log.warning("%s: tasks under the old settings still run as consumer %s; the new settings start as %s",
                    pipeline, self._consumer, fresh)
        return fresh

    async def _retire(self, name: str, grace: float) -> None:
        """Stop reading, let running tasks finish (up to ``grace``), then leave the group if nothing is left;
        tasks that outlive the grace keep their lease until they end, and then it leaves."""
        member = self.members.pop(name)
        self.retiring.add(member)  # a shutdown meanwhile drains it with the rest
        member.worker.stop()
        await asyncio.gather(member.run, return_exceptions=True)
        if await member.worker.drain(grace):
            self._leaving[member] = asyncio.create_task(self._leave_when_done(member), name=f"retire:{name}")
            return
        await self._leave(member)

    async def _leave_when_done(self, member: Member) -> None:
        while await member.worker.drain(60.0):
            pass
        await self._leave(member)

    async def _leave(self, member: Member) -> None:
        await member.worker.leave()
        member.close()
        self.retiring.discard(member)
        self._leaving.pop(member, None)

    def stop_reading(self) -> list[asyncio.Task[None]]:
        """Shutdown, step 1: no reader reads again and no reload starts one; the readers to wait for."""
        self.closing = True
        for member in [*self.members.values(), *self.retiring]:
            member.worker.stop()
        return [member.run for member in self.members.values()]

    async def drain_and_leave(self, grace: float) -> int:
        """Shutdown, step 2: drain every reader, retiring ones included; leave the groups only if nothing
        is left running, so nobody takes over live work. Returns how many tasks were left."""
        for task in self._leaving.values():
            task.cancel()  # their drain joins this one
        await asyncio.gather(*self._leaving.values(), return_exceptions=True)
        workers = [member.worker for member in [*self.members.values(), *self.retiring]]
        left = sum(await asyncio.gather(*(worker.drain(grace) for worker in workers)))
        if not left:
            await asyncio.gather(*(worker.leave() for worker in workers))
        return left

    def close(self) -> None:
        for member in [*self.members.values(), *self.retiring]:
            member.close()
