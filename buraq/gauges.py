"""Gauges read when Prometheus scrapes: each queue's state in Redis, and build info.

Queue gauges (depth, oldest pending age, DLQ depth, delayed) describe the pipeline, not the
process: every `buraq serve` reports the same value, so aggregate them with max(), not sum().
They are read from Redis (streams.queue_state, on the serve process's event loop) at most once a
second, whatever the scrape rate.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from buraq import streams
from buraq.config import Pipeline

log = logging.getLogger("buraq.gauges")
CACHE_SECONDS = 1.0


class PipelineGauges(Collector):
    def __init__(self, pipelines: Sequence[Pipeline], client: aioredis.Redis, loop: asyncio.AbstractEventLoop,
                 version: str) -> None:
        self._pipelines = list(pipelines)
        self._redis = client  # the serve loop's client: scrapes run in the HTTP thread and hop over
        self._loop = loop
        self._version = version
        self._lock = threading.Lock()
        self._cached_at = 0.0
        self._cached: dict[str, dict[str, float]] = {}

    def describe(self) -> Iterable[Any]:
        """The metric names, without values: registering must not read Redis (it runs on the event loop)."""
        yield from _queue_family_map().values()
        yield InfoMetricFamily("buraq_build", "")

    def collect(self) -> Iterable[Any]:
        yield from self._queue_families()
        info = InfoMetricFamily("buraq_build", "Versions of buraq and what it runs on.")
        info.add_metric([], {"version": self._version, "python": platform.python_version(),
                             "redis_py": redis.__version__})
        yield info

    def _queue_families(self) -> Iterable[GaugeMetricFamily]:
        families = _queue_family_map()
        for name, values in self._read().items():
            for key, family in families.items():
                if key in values:
                    family.add_metric([name], values[key])
        yield from families.values()

    def _read(self) -> dict[str, dict[str, float]]:
        with self._lock:
            if time.monotonic() - self._cached_at >= CACHE_SECONDS:
                try:
                    self._cached = asyncio.run_coroutine_threadsafe(self._read_all(), self._loop).result(5)
                except Exception as exc:  # Redis away, or the loop busy: no queue gauges this scrape
                    log.warning("queue gauges unavailable: %s", exc)
                    self._cached = {}
                self._cached_at = time.monotonic()
            return self._cached

    async def _read_all(self) -> dict[str, dict[str, float]]:
        values = {}
        for pipeline in self._pipelines:
            state = await streams.queue_state(self._redis, pipeline)
            pipeline_values = {"dlq": state["dlq"], "delayed": state["delayed"]}
            if state["group"]:
                pipeline_values.update(pending=state["pending"], oldest=state["oldest_pending_age"])
                if state["queued"] is not None:
                    pipeline_values["depth"] = state["queued"] + state["pending"]
            values[pipeline.name] = pipeline_values
        return values


def _queue_family_map() -> dict[str, GaugeMetricFamily]:
    """Empty families of the queue gauges, keyed as queue values are."""
    def gauge(name: str, documentation: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, labels=["pipeline"])

    return {
        "depth": gauge("buraq_queue_depth", "Tasks not yet done: unread entries plus pending ones "
                       "(never XLEN, which counts finished work)."),
        "pending": gauge("buraq_queue_pending", "Entries delivered to a worker and not yet ended."),
        "oldest": gauge("buraq_oldest_pending_age_seconds", "Age since enqueue of the oldest pending entry "
                        "(0 when none)."),
        "dlq": gauge("buraq_dlq_depth", "Entries in the dead-letter stream."),
        "delayed": gauge("buraq_delayed_tasks", "Delayed tasks and parked retries."),
    }
