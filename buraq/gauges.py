"""Gauges read when Prometheus scrapes: this process's slots, and each queue's state in Redis.

Queue gauges (depth, oldest pending age, DLQ depth, delayed) describe the pipeline, not the
process: every `buraq serve` reports the same value, so aggregate them with max(), not sum().
They are read from Redis at most once a second, whatever the scrape rate.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from buraq.config import Pipeline

log = logging.getLogger("buraq.gauges")
CACHE_SECONDS = 1.0


class PipelineGauges(Collector):
    def __init__(self, pipelines: Sequence[Pipeline], redis_url: str, in_flight: Callable[[str], int],
                 version: str) -> None:
        self._pipelines = list(pipelines)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._in_flight = in_flight
        self._version = version
        self._lock = threading.Lock()
        self._cached_at = 0.0
        self._cached: dict[str, dict[str, float]] = {}

    def collect(self) -> Iterable[Any]:
        slots = GaugeMetricFamily("buraq_worker_slots", "Tasks this process may run at once (pool).", labels=["pipeline"])
        busy = GaugeMetricFamily("buraq_worker_slots_busy", "Tasks this process is running now.", labels=["pipeline"])
        for pipeline in self._pipelines:
            slots.add_metric([pipeline.name], pipeline.pool)
            busy.add_metric([pipeline.name], self._in_flight(pipeline.name))
        yield slots
        yield busy
        yield from self._queue_families()
        info = InfoMetricFamily("buraq_build", "Versions of buraq and what it runs on.")
        info.add_metric([], {"version": self._version, "python": platform.python_version(),
                             "redis_py": redis.__version__})
        yield info

    def _queue_families(self) -> Iterable[GaugeMetricFamily]:
        families = {
            "depth": GaugeMetricFamily("buraq_queue_depth", "Tasks not yet done: unread entries plus pending ones "
                                       "(never XLEN, which counts finished work).", labels=["pipeline"]),
            "pending": GaugeMetricFamily("buraq_queue_pending", "Entries delivered to a worker and not yet ended.",
                                         labels=["pipeline"]),
            "oldest": GaugeMetricFamily("buraq_oldest_pending_age_seconds", "Age since enqueue of the oldest pending "
                                        "entry (0 when none).", labels=["pipeline"]),
            "dlq": GaugeMetricFamily("buraq_dlq_depth", "Entries in the dead-letter stream.", labels=["pipeline"]),
            "delayed": GaugeMetricFamily("buraq_delayed_tasks", "Delayed tasks and parked retries.",
                                         labels=["pipeline"]),
        }
        for name, values in self._read().items():
            for key, family in families.items():
                if key in values:
                    family.add_metric([name], values[key])
        yield from families.values()

    def _read(self) -> dict[str, dict[str, float]]:
        with self._lock:
            if time.monotonic() - self._cached_at >= CACHE_SECONDS:
                try:
                    self._cached = {p.name: self._read_pipeline(p) for p in self._pipelines}
                except (redis.RedisError, OSError) as exc:
                    log.warning("queue gauges unavailable: %s", exc)
                    self._cached = {}
                self._cached_at = time.monotonic()
            return self._cached

    def _read_pipeline(self, pipeline: Pipeline) -> dict[str, float]:
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xinfo_groups(pipeline.stream)
            pipe.xpending(pipeline.stream, pipeline.group)
            pipe.xlen(pipeline.dlq)
            pipe.zcard(pipeline.delayed)
            pipe.time()
            groups, pending, dlq, delayed, now = pipe.execute(raise_on_error=False)
        values: dict[str, float] = {}
        if not isinstance(dlq, Exception):
            values["dlq"] = dlq
        if not isinstance(delayed, Exception):
            values["delayed"] = delayed
        if isinstance(pending, Exception) or isinstance(groups, Exception):
            return values  # no group yet: nothing read, nothing pending
        group = next((g for g in groups if g["name"] in (pipeline.group, pipeline.group.encode())), None)
        values["pending"] = pending["pending"]
        now_s = now[0] + now[1] / 1_000_000
        oldest = pending.get("min")
        values["oldest"] = max(0.0, now_s - int(oldest.decode().split("-")[0]) / 1000) if oldest else 0.0
        if group is not None and group.get("lag") is not None:
            values["depth"] = group["lag"] + pending["pending"]
        return values
