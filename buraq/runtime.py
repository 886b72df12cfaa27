"""`buraq serve`: wire pipelines, plugins, Redis and metrics together and run until told to stop.

Shutdown is a small state machine: the first SIGTERM/SIGINT stops every read
(reads in flight finish, at most one BLOCK interval), running tasks get the
grace period, acknowledgements are flushed, and the process exits 0. A second
signal exits at once (code 130); unfinished entries stay pending in Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import prometheus_client
from redis.asyncio import Redis

from buraq.config import Pipeline
from buraq import __version__, connection, streams
from buraq.chaining import Chain
from buraq.engine import Observers, PipelineWorker
from buraq.limits import DispatchGate
from buraq.errors import BuraqError
from buraq.gauges import PipelineGauges
from buraq.execution import HandlerRunner
from buraq.plugins import Registry
from buraq.process_pool import ProcessPool
from buraq.scheduler import Job, Scheduler

log = logging.getLogger("buraq.runtime")

EXIT_OK = 0
EXIT_DRAIN_INCOMPLETE = 1
EXIT_INTERRUPTED = 130


@dataclass
class ServeOptions:
    redis_url: str
    listen: tuple[str, int] | None = ("127.0.0.1", 2112)
    grace: float = 30.0
    burst: bool = False
    consumer: str | None = None
    plugins_dir: str | None = None


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def serve(pipelines: list[Pipeline], registry: Registry, options: ServeOptions) -> int:
    """Run every pipeline until a signal (or, in burst mode, until all are idle); return the exit code."""
    consumer = options.consumer or default_consumer_name()
    jobs = _schedule_jobs(pipelines, registry)  # before anything starts: a payload no codec takes is a user error
    redis = connection.client(options.redis_url)
    threads, processes = _executors(pipelines, registry, options.plugins_dir)
    observers = Observers([observer for observer, _ in registry.observers])
    workers = [
        PipelineWorker(p, HandlerRunner(p, registry.handler(p.handler), threads, processes.get(p.name)),
                       registry.codec(p.codec), redis, consumer, observers,
                       chain=Chain.build(p, pipelines, registry.codec, redis),
                       gate=DispatchGate.build(redis, p, consumer))
        for p in pipelines
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = _install_signals(loop, stop, workers, processes)
    server = None
    runs: list[asyncio.Task[None]] = []
    try:
        if not await _ready_unless_stopped(redis, options.redis_url, stop):
            log.info("stopped before Redis was reachable")
            return EXIT_OK
        server = _start_metrics(options.listen, PipelineGauges(pipelines, redis, loop, _in_flight_by_name(workers),
                                                               __version__))
        log.info("serving %d pipeline(s) as consumer %s on %s: %s", len(workers), consumer,
                 connection.redact(options.redis_url), ", ".join(p.name for p in pipelines))
        runs = [asyncio.create_task(w.run(), name=f"read:{w.pipeline.name}") for w in workers]
        scheduler = asyncio.create_task(Scheduler(redis, jobs).run(stop), name="scheduler")
        await _run_until_stopped(stop, workers, runs, options.burst, redis)
        scheduler.cancel()  # no new ticks while draining (a Lua step in flight completes in Redis or not at all)
        await asyncio.gather(scheduler, return_exceptions=True)
        return await _drain_and_leave(workers, options.grace)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for task in runs:
            task.cancel()
        if server is not None:
            server.shutdown()
        await redis.aclose()
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        for pool in processes.values():
            pool.close()


def _schedule_jobs(pipelines: list[Pipeline], registry: Registry) -> list[Job]:
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


def _executors(pipelines: list[Pipeline], registry: Registry,
               plugins_dir: str | None) -> tuple[ThreadPoolExecutor | None, dict[str, ProcessPool]]:
    """A thread per slot of every threaded sync pipeline; a process pool per `executor: process` one."""
    for pipeline in pipelines:
        if pipeline.executor == "process" and registry.handler(pipeline.handler).is_async:
            log.warning("%s: executor: process applies to plain def handlers; %s is async and runs on the "
                        "event loop", pipeline.name, pipeline.handler)
    sync = [p for p in pipelines if not registry.handler(p.handler).is_async]
    slots = sum(p.pool for p in sync if p.executor == "thread")
    threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="buraq-sync") if slots else None
    processes = {p.name: ProcessPool(p.handler, plugins_dir, p.pool) for p in sync if p.executor == "process"}
    return threads, processes


async def _ready_unless_stopped(redis: Redis, url: str, stop: asyncio.Event) -> bool:
    """Wait for Redis; False if a signal came first (nothing ran, so there is nothing to drain)."""
    ready = asyncio.create_task(connection.wait_until_ready(redis, url))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not ready.done():
        ready.cancel()
        return False
    ready.result()
    return True


async def _run_until_stopped(stop: asyncio.Event, workers: list[PipelineWorker], runs: list[asyncio.Task[None]],
                             burst: bool, redis: Redis) -> None:
    """Return when told to stop (a signal, or burst mode's idleness); then stop every reader."""
    waiter = asyncio.create_task(_wait_for_stop(stop, workers, burst, redis))
    done, _ = await asyncio.wait([waiter, *runs], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception() is not None:
            raise task.exception()  # a pipeline's reader died: stop everything and say why
    for worker in workers:
        worker.stop()
    await asyncio.gather(*runs, return_exceptions=True)
    waiter.cancel()


async def _drain_and_leave(workers: list[PipelineWorker], grace: float) -> int:
    """Drain; leave the groups only when nothing is left running, so nobody takes over live work."""
    left = sum(await asyncio.gather(*(w.drain(grace) for w in workers)))
    if left:
        log.warning("grace period of %.0fs ran out with %d task(s) running; they stay pending in Redis and "
                    "are taken over by other workers once this one's lease runs out", grace, left)
        return EXIT_DRAIN_INCOMPLETE
    await asyncio.gather(*(w.leave() for w in workers))
    log.info("drained; all acknowledgements flushed")
    return EXIT_OK


async def _wait_for_stop(stop: asyncio.Event, workers: list[PipelineWorker], burst: bool, redis: Redis) -> None:
    if not burst:
        await stop.wait()
        return
    while not stop.is_set():
        if all(worker.idle for worker in workers) and not await _anything_pending(redis, workers):
            log.info("burst mode: every pipeline is idle; stopping")
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass


async def _anything_pending(redis: Redis, workers: list[PipelineWorker]) -> bool:
    """Entries still pending anywhere in the groups (say, left by a dead worker, waiting to be taken over)."""
    counts = await asyncio.gather(*(streams.pending_count(redis, w.pipeline) for w in workers))
    return any(counts)


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, workers: list[PipelineWorker],
                     processes: dict[str, ProcessPool]) -> list[signal.Signals]:
    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now; unfinished tasks stay pending in Redis for other workers", sig.name)
            loop.create_task(_exit_now(workers, processes))
            return
        in_flight = sum(w.in_flight for w in workers)
        log.info("%s: no new reads; draining %d running task(s)", sig.name, in_flight)
        stop.set()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
        installed.append(sig)
    return installed


async def _exit_now(workers: list[PipelineWorker], processes: dict[str, ProcessPool]) -> None:
    """Kill handler processes, tell the groups this consumer is gone (at most half a second), exit at once."""
    for pool in processes.values():
        pool.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(w.leave() for w in workers), return_exceptions=True), 0.5)
    finally:
        logging.shutdown()
        os._exit(EXIT_INTERRUPTED)


def _in_flight_by_name(workers: list[PipelineWorker]) -> Callable[[str], int]:
    by_name = {w.pipeline.name: w for w in workers}
    return lambda name: by_name[name].in_flight


def _start_metrics(listen: tuple[str, int] | None, gauges: PipelineGauges):  # type: ignore[no-untyped-def]
    if listen is None:
        return None
    prometheus_client.REGISTRY.register(gauges)
    host, port = listen
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", server.server_port)
    return server
