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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import prometheus_client

from buraq import connection
from buraq.config import Pipeline
from buraq.engine import Observers, PipelineWorker
from buraq.plugins import Registry

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


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def serve(pipelines: list[Pipeline], registry: Registry, options: ServeOptions) -> int:
    """Run every pipeline until a signal (or, in burst mode, until all are idle); return the exit code."""
    consumer = options.consumer or default_consumer_name()
    sync_slots = sum(p.pool for p in pipelines if not registry.handler(p.handler).is_async)
    executor = ThreadPoolExecutor(max_workers=sync_slots, thread_name_prefix="buraq-sync") if sync_slots else None
    redis = connection.client(options.redis_url)
    observers = Observers([observer for observer, _ in registry.observers])
    workers = [
        PipelineWorker(p, registry.handler(p.handler), registry.codec(p.codec), redis, consumer, observers, executor)
        for p in pipelines
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = _install_signals(loop, stop, workers)
    ready = asyncio.create_task(connection.wait_until_ready(redis, options.redis_url))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not ready.done():  # told to stop while still waiting for Redis: nothing ran, nothing to drain
        ready.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
        await redis.aclose()
        log.info("stopped before Redis was reachable")
        return EXIT_OK
    ready.result()
    server = _start_metrics(options.listen)
    log.info("serving %d pipeline(s) as consumer %s on %s: %s", len(workers), consumer,
             connection.redact(options.redis_url), ", ".join(p.name for p in pipelines))
    runs = [asyncio.create_task(w.run(), name=f"read:{w.pipeline.name}") for w in workers]
    try:
        waiter = asyncio.create_task(_wait_for_stop(stop, workers, options.burst))
        done, _ = await asyncio.wait([waiter, *runs], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # a pipeline's reader died: stop everything and say why
        for worker in workers:
            worker.stop()
        await asyncio.gather(*runs, return_exceptions=True)
        waiter.cancel()
        left = sum(await asyncio.gather(*(w.drain(options.grace) for w in workers)))
        if left:
            log.warning("grace period of %.0fs ran out with %d task(s) running; they stay pending in Redis",
                        options.grace, left)
            return EXIT_DRAIN_INCOMPLETE
        log.info("drained; all acknowledgements flushed")
        return EXIT_OK
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for task in runs:
            task.cancel()
        if server is not None:
            server.shutdown()
        await redis.aclose()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


async def _wait_for_stop(stop: asyncio.Event, workers: list[PipelineWorker], burst: bool) -> None:
    if not burst:
        await stop.wait()
        return
    while not stop.is_set():
        if all(worker.idle for worker in workers):
            log.info("burst mode: every pipeline is idle; stopping")
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event,
                     workers: list[PipelineWorker]) -> list[signal.Signals]:
    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now; unfinished tasks stay pending in Redis", sig.name)
            logging.shutdown()
            os._exit(EXIT_INTERRUPTED)
        in_flight = sum(w.in_flight for w in workers)
        log.info("%s: no new reads; draining %d running task(s)", sig.name, in_flight)
        stop.set()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
        installed.append(sig)
    return installed


def _start_metrics(listen: tuple[str, int] | None):  # type: ignore[no-untyped-def]
    if listen is None:
        return None
    host, port = listen
    server, _thread = prometheus_client.start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", server.server_port)
    return server
