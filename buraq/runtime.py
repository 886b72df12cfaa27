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
from dataclasses import dataclass

import prometheus_client
from redis.asyncio import Redis

from buraq.config import Pipeline
from buraq import __version__, connection, metrics, streams, web
from buraq.backoff import sleep_unless
from buraq.engine import Observers, PipelineWorker
from buraq.gauges import PipelineGauges
from buraq.plugins import Registry
from buraq.fleet import Fleet
from buraq.reload import Reloader
from buraq.scheduler import Scheduler, jobs_for
from buraq.web.auth import Policy

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
    dashboard: Policy | None = None  # None: /metrics and /healthz only
    paths: tuple[str, ...] = ("pipelines",)  # re-read on SIGHUP


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def serve(pipelines: list[Pipeline], registry: Registry, options: ServeOptions) -> int:
    """Run every pipeline until a signal (or, in burst mode, until all are idle); return the exit code."""
    consumer = options.consumer or default_consumer_name()
    jobs = jobs_for(pipelines, registry)  # before anything starts: a payload no codec takes is a user error
    observers = Observers([observer for observer, _ in registry.observers])
    fleet = Fleet(registry, consumer, observers, options.plugins_dir)
    current = list(pipelines)  # shared with the listener, updated in place by a reload
    stop = asyncio.Event()
    reload = Reloader(options.paths, registry, fleet, current, options.grace)
    loop = asyncio.get_running_loop()
    signals = _install_signals(loop, stop, fleet, reload)
    listener: web.Listener | None = None
    background: list[asyncio.Task[None]] = []
    redis: Redis | None = None
    try:
        redis = await _connect_unless_stopped(options.redis_url, stop, connections_for(current))
        if redis is None:
            log.info("stopped before Redis was reachable")
            return EXIT_OK
        fleet.redis = redis  # workers are built once Redis answers: its kind (cluster or not) is known then
        if options.listen is not None:
            listener = _listen(options.listen, options.dashboard, current, redis)
        log.info("serving %d pipeline(s) as consumer %s on %s: %s", len(current), consumer,
                 connection.redact(options.redis_url), ", ".join(p.name for p in current))
        for pipeline in current:
            fleet.start(pipeline, current)
        reload.start_scheduler(Scheduler(redis, jobs), stop)
        background = [asyncio.create_task(_publish_slots(fleet), name="slots"),
                      asyncio.create_task(reload.run_forever(), name="reload")]
        await _run_until_stopped(stop, fleet, options.burst, redis)
        for task in background:
            task.cancel()
        await reload.stop_scheduler()  # no new ticks while draining (a Lua step in flight completes in Redis or not at all)
        await asyncio.gather(*background, return_exceptions=True)
        return await _drain_and_leave(fleet, options.grace)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for task in background:
            task.cancel()
        if listener is not None:
            listener.close()
        fleet.close()
        if redis is not None:
            await redis.aclose()


def connections_for(pipelines: list[Pipeline]) -> int:
    """Pooled Redis connections one serve may need at once: per pipeline a blocking read, heartbeat,
    reclaim, promoter and ack flush, plus a retry or dead-letter step for each running task; doubled,
    so pipelines a reload adds fit too. redis-py's default of 100 fails a busy process with
    "Too many connections"."""
    return max(256, 2 * sum(p.pool + 6 for p in pipelines))


async def _connect_unless_stopped(url: str, stop: asyncio.Event, max_connections: int) -> Redis | None:
    """Wait for Redis and connect (cluster mode if it is a cluster); None if a signal came first."""
    ready = asyncio.create_task(connection.connect(url, max_connections=max_connections))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not ready.done():
        ready.cancel()
        return None
    return ready.result()


async def _run_until_stopped(stop: asyncio.Event, fleet: Fleet, burst: bool, redis: Redis) -> None:
    """Return when told to stop (a signal, or burst mode's idleness); then stop every reader."""
    waiter = asyncio.create_task(_wait_for_stop(stop, fleet, burst, redis))
    done, _ = await asyncio.wait([waiter, fleet.failed], return_when=asyncio.FIRST_COMPLETED)
    if fleet.failed in done:
        waiter.cancel()
        raise fleet.failed.result()  # a pipeline's reader died: stop everything and say why
    await asyncio.gather(*fleet.stop_reading(), return_exceptions=True)


async def _drain_and_leave(fleet: Fleet, grace: float) -> int:
    """Drain; leave the groups only when nothing is left running, so nobody takes over live work."""
    left = await fleet.drain_and_leave(grace)
    if left:
        log.warning("grace period of %.0fs ran out with %d task(s) running; they stay pending in Redis and "
                    "are taken over by other workers once this one's lease runs out", grace, left)
        return EXIT_DRAIN_INCOMPLETE
    log.info("drained; all acknowledgements flushed")
    return EXIT_OK


async def _wait_for_stop(stop: asyncio.Event, fleet: Fleet, burst: bool, redis: Redis) -> None:
    if not burst:
        await stop.wait()
        return
    while not stop.is_set():
        workers = fleet.workers
        if all(worker.idle for worker in workers) and not await _anything_pending(redis, workers):
            log.info("burst mode: every pipeline is idle; stopping")
            return
        await sleep_unless(stop, 0.1)


async def _anything_pending(redis: Redis, workers: list[PipelineWorker]) -> bool:
    """Entries still pending anywhere in the groups (say, left by a dead worker, waiting to be taken over)."""
    counts = await asyncio.gather(*(streams.pending_count(redis, w.pipeline) for w in workers))
    return any(counts)


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, fleet: Fleet,
                     reload: Reloader) -> list[signal.Signals]:
    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now; unfinished tasks stay pending in Redis for other workers", sig.name)
            loop.create_task(_exit_now(fleet))
            return
        in_flight = sum(w.in_flight for w in fleet.workers)
        log.info("%s: no new reads; draining %d running task(s)", sig.name, in_flight)
        stop.set()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
        installed.append(sig)
    loop.add_signal_handler(signal.SIGHUP, reload.request)
    installed.append(signal.SIGHUP)
    return installed


async def _exit_now(fleet: Fleet) -> None:
    """Kill handler processes, tell the groups this consumer is gone (at most half a second), exit at once."""
    workers = fleet.workers
    fleet.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(w.leave() for w in workers), return_exceptions=True), 0.5)
    finally:
        logging.shutdown()
        os._exit(EXIT_INTERRUPTED)


async def _publish_slots(fleet: Fleet, every: float = 0.25) -> None:
    """Keep the slot gauges current (a set, not a callback, so `serve --processes` can add them up)."""
    while True:
        for worker in fleet.workers:
            metrics.WORKER_SLOTS.labels(worker.pipeline.name).set(worker.pipeline.pool)
            metrics.WORKER_SLOTS_BUSY.labels(worker.pipeline.name).set(worker.in_flight)
        await asyncio.sleep(every)


def _listen(listen: tuple[str, int], policy: Policy | None, pipelines: list[Pipeline], redis: Redis) -> web.Listener:
    """Metrics and, unless it is off, the dashboard, on one listener; queue gauges read from Redis."""
    registry = prometheus_client.REGISTRY
    registry.register(PipelineGauges(pipelines, redis, asyncio.get_running_loop(), __version__))
    return web.start(listen, policy, registry, pipelines, redis, processes=lambda: 1)
