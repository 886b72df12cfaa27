"""`buraq serve --processes N`: N worker processes under one supervisor, for every core.

Each child is an ordinary `buraq serve` with its own consumer name and no listener; the
supervisor restarts a child that dies, forwards SIGTERM/SIGINT so all of them drain, and serves
the dashboard and /metrics for all of them: the children write their counters to a shared
prometheus_client multiprocess folder, which the supervisor adds up at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, multiprocess
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from buraq import __version__, connection, web
from buraq.backoff import pause_after, sleep_unless
from buraq.config import Pipeline
from buraq.gauges import PipelineGauges
from buraq.plugins import Registry
from buraq.reload import checked_pipelines
from buraq.runtime import EXIT_INTERRUPTED, EXIT_OK, ServeOptions

log = logging.getLogger("buraq.supervisor")
SUPERVISED_ENV = "BURAQ_SUPERVISOR_PID"  # set in children: drain and exit when this process is gone
HEALTHY_AFTER = 30.0  # a child that ran this long has its restart backoff reset
CHILD_SETTLE = 2.0  # seconds a new child gets to start before it is sent SIGHUP


@dataclass
class ChildSpec:
    """How to start child ``index``: the `buraq serve` arguments every child shares, plus its own name."""

    paths: Sequence[str]
    options: ServeOptions
    log_level: str
    metrics_dir: str

    def argv(self, index: int) -> list[str]:
        options = self.options
        # --processes 1: a child must never supervise ($BURAQ_PROCESSES is in its environment too).
        # The Redis URL goes in the environment, not argv, where `ps` would show its password.
        argv = [sys.executable, "-m", "buraq", "--log-level", self.log_level, "serve", *self.paths,
                "--processes", "1", "--listen", "off", "--grace", f"{options.grace}s"]
        if options.plugins_dir:
            argv += ["--plugins-dir", options.plugins_dir]
        if options.burst:
            argv.append("--burst")
        if options.consumer:
            argv += ["--consumer", f"{options.consumer}-{index}"]
        return argv

    def env(self) -> dict[str, str]:
        return {**os.environ, "BURAQ_REDIS_URL": self.options.redis_url, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
                SUPERVISED_ENV: str(os.getpid())}


@dataclass
class Supervisor:
    spec: ChildSpec
    processes: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: bool = False
    live: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)  # monotonic start time of each live child

    async def run(self) -> int:
        codes = await asyncio.gather(*(self._keep_running(index) for index in range(1, self.processes + 1)))
        if self.interrupted:
            return EXIT_INTERRUPTED
        return max(codes, default=EXIT_OK)

    async def _keep_running(self, index: int) -> int:
        """Run child ``index``; restart it when it dies unasked, with backoff if it keeps dying."""
        failures = 0
        while True:
            started = time.monotonic()
            # A session of its own: a terminal's Ctrl-C (or systemd's stop of the whole group) reaches
            # only the supervisor, which passes one signal on; two would make each child exit at once.
            child = await asyncio.create_subprocess_exec(*self.spec.argv(index), env=self.spec.env(),
                                                         start_new_session=True)
            self.live[index] = child
            self.started[index] = time.monotonic()
            if self.stopping.is_set():  # a signal came while it started: pass it on
                child.send_signal(signal.SIGTERM)
            code = await child.wait()
            del self.live[index]
            multiprocess.mark_process_dead(child.pid, self.spec.metrics_dir)
            if self.stopping.is_set() or (self.spec.options.burst and code == 0):
                return code
            failures = 0 if time.monotonic() - started >= HEALTHY_AFTER else failures + 1
            delay = pause_after(failures - 1, 0.5, 30.0)
            log.warning("process %d (pid %d) exited with code %d; starting it again in %.1fs (its pending "
                        "tasks are taken over when its lease runs out)", index, child.pid, code, delay)
            if await sleep_unless(self.stopping, delay):
                return code

    def reload(self, check: Callable[[], list[Pipeline] | None], current: list[Pipeline]) -> None:
        """SIGHUP: check the files here once; only valid ones reach the children, which reload themselves."""
        pipelines = check()
        if pipelines is None:
            return
        current[:] = pipelines
        log.info("SIGHUP: files are valid; telling %d process(es) to reload", len(self.live))
        loop = asyncio.get_running_loop()
        for index, child in list(self.live.items()):
            # A child still starting Python would die of SIGHUP (its default action) before buraq ignores
            # it: give it CHILD_SETTLE seconds first. A late reload of files it already read changes nothing.
            wait = CHILD_SETTLE - (time.monotonic() - self.started.get(index, 0.0))
            loop.call_later(max(0.0, wait), _hang_up, child)

    def on_signal(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            log.warning("second %s: telling every process to exit now", sig.name)
            self.interrupted = True
        else:
            log.info("%s: draining %d process(es)", sig.name, len(self.live))
            self.stopping.set()
        for child in list(self.live.values()):
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)


async def supervise(paths: Sequence[str], pipelines: list[Pipeline], registry: Registry, options: ServeOptions,
                    processes: int, log_level: str) -> int:
    """Run ``processes`` children until a signal (or, in burst mode, until all are idle)."""
    with tempfile.TemporaryDirectory(prefix="buraq-metrics-") as metrics_dir:
        supervisor = Supervisor(ChildSpec(paths, options, log_level, metrics_dir), processes)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.on_signal, sig)
        pipelines = list(pipelines)  # shared with the listener; a reload updates it in place
        loop.add_signal_handler(signal.SIGHUP, supervisor.reload, lambda: checked_pipelines(paths, registry), pipelines)
        redis = await _gauge_client(options.redis_url)
        listener = None
        try:
            if options.listen is not None:
                metrics = CollectorRegistry()
                multiprocess.MultiProcessCollector(metrics, path=metrics_dir)
                metrics.register(PipelineGauges(pipelines, redis, loop, __version__))
                listener = web.start(options.listen, options.dashboard, metrics, pipelines, redis,
                                     processes=lambda: len(supervisor.live))
            log.info("supervising %d processes serving %s", processes, ", ".join(p.name for p in pipelines))
            return await supervisor.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if listener is not None:
                listener.close()
            await redis.aclose()


async def _gauge_client(url: str) -> Redis | RedisCluster:
    """The supervisor only reads gauges: it asks once whether Redis is a cluster, and never waits for it.

    Redis not up yet gives a single-node client (a ``redis+cluster://`` URL still gives a cluster one).
    """
    try:
        return await connection.connect(url, give_up_after=0)
    except connection.REDIS_TROUBLE:
        return connection.client(url)


def _hang_up(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.send_signal(signal.SIGHUP)
