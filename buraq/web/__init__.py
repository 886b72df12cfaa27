"""The listener `buraq serve` opens: Prometheus metrics, the live dashboard and its JSON API.

app.py routes, auth.py decides who may do what, api.py answers, history.py remembers the last
minutes of metrics, charts.py draws them, server.py is the thread that listens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from buraq.config import Pipeline
from buraq.web.api import Context
from buraq.web.app import DashboardApp
from buraq.web.auth import Policy
from buraq.web.history import History
from buraq.web.server import WebServer

log = logging.getLogger("buraq.web")
BENCH_RESULTS = Path(".buraq") / "bench" / "latest.json"


@dataclass
class Listener:
    server: WebServer
    history: History | None

    def close(self) -> None:
        if self.history is not None:
            self.history.stop()
        self.server.close()


def start(listen: tuple[str, int], policy: Policy | None, registry: CollectorRegistry,
          pipelines: Sequence[Pipeline], redis: Redis, processes: Callable[[], int]) -> Listener:
    """Listen now; ``policy`` None serves /metrics and /healthz only (`--dashboard off`)."""
    history = context = None
    if policy is not None:
        history = History(registry.collect, [p.name for p in pipelines])
        context = Context(pipelines, history, redis, asyncio.get_running_loop(), processes, BENCH_RESULTS)
    server = WebServer(*listen, DashboardApp(registry, policy, context)).start()
    if history is not None:
        history.start()
        log.info("dashboard on %s/ (metrics on %s/metrics)", server.url, server.url)
    else:
        log.info("metrics on %s/metrics", server.url)
    return Listener(server, history)
