"""The metrics observer: turns task life-cycle events into Prometheus samples."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from buraq import metrics
from buraq.hookspecs import hookimpl
from buraq.task import Task


class MetricsObserver:
    def task_started(self, task: Task) -> None:
        if task.attempt == 1:
            metrics.TASK_LATENCY.labels(task.pipeline).observe(max(0.0, time.time() - task.enqueued_at))

    def task_succeeded(self, task: Task, duration: float) -> None:
        metrics.TASKS_PROCESSED.labels(task.pipeline).inc()
        metrics.TASK_DURATION.labels(task.pipeline).observe(duration)

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


@hookimpl(trylast=True)
def register_observers(register: Callable[[Any], None]) -> None:
    register(MetricsObserver())
