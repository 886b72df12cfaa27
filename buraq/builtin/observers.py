"""The metrics observer: turns task life-cycle events into Prometheus samples."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from buraq import metrics
from buraq.hookspecs import hookimpl
from buraq.task import Task


class MetricsObserver:
    def __init__(self) -> None:
        # Per-pipeline children looked up once: .labels() takes a lock and builds a key on every call.
        self._latency: dict[str, Any] = {}
        self._processed: dict[str, Any] = {}
        self._duration: dict[str, Any] = {}

    def task_started(self, task: Task) -> None:
        if task.attempt == 1:
            _child(self._latency, metrics.TASK_LATENCY, task.pipeline).observe(max(0.0, time.time() - task.enqueued_at))

    def task_succeeded(self, task: Task, duration: float) -> None:
        _child(self._processed, metrics.TASKS_PROCESSED, task.pipeline).inc()
        _child(self._duration, metrics.TASK_DURATION, task.pipeline).observe(duration)

    def task_failed(self, task: Task, error: BaseException, duration: float) -> None:
        metrics.TASKS_FAILED.labels(task.pipeline).inc()
        metrics.TASK_DURATION.labels(task.pipeline).observe(duration)

    def task_retried(self, task: Task, delay: float) -> None:
        metrics.TASKS_RETRIED.labels(task.pipeline).inc()

    def task_dead_lettered(self, pipeline: str, task_id: str, reason: str) -> None:
        metrics.TASKS_DLQ.labels(pipeline, reason).inc()

    def tasks_reclaimed(self, pipeline: str, count: int) -> None:
        metrics.TASKS_RECLAIMED.labels(pipeline).inc(count)

    def entry_trimmed(self, pipeline: str, entry_id: str) -> None:
        metrics.ENTRIES_TRIMMED.labels(pipeline).inc()


def _child(cache: dict[str, Any], metric: Any, pipeline: str) -> Any:
    child = cache.get(pipeline)
    if child is None:
        child = cache[pipeline] = metric.labels(pipeline)
    return child


@hookimpl(trylast=True)
def register_observers(register: Callable[[Any], None]) -> None:
    register(MetricsObserver())
