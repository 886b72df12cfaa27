"""Prometheus metrics, labelled by pipeline and never by task id (that would grow without bound)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# From a millisecond no-op to a ten-minute batch job.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

TASKS_PROCESSED = Counter("buraq_tasks_processed", "Tasks whose handler succeeded.", ["pipeline"])
TASKS_FAILED = Counter("buraq_tasks_failed", "Handler executions that failed (each attempt counts).", ["pipeline"])
TASKS_RETRIED = Counter("buraq_tasks_retried", "Failed tasks scheduled to run again.", ["pipeline"])
TASKS_DLQ = Counter("buraq_tasks_dlq", "Tasks moved to the dead-letter stream.", ["pipeline", "reason"])
TASK_DURATION = Histogram("buraq_task_duration_seconds", "Handler run time per execution.", ["pipeline"],
                          buckets=DURATION_BUCKETS)
TASK_LATENCY = Histogram("buraq_task_latency_seconds", "Time from enqueue (Redis entry time) to handler start.",
                         ["pipeline"], buckets=DURATION_BUCKETS)
TASKS_RECLAIMED = Counter("buraq_tasks_reclaimed", "Tasks taken over from workers that died or went silent.",
                          ["pipeline"])
ENTRIES_TRIMMED = Counter("buraq_entries_trimmed", "Pending entries found deleted from the stream (nothing to run).",
                          ["pipeline"])

# Set by the serve loop a few times a second; "livesum" adds up live processes under `serve --processes`.
WORKER_SLOTS = Gauge("buraq_worker_slots", "Tasks this buraq may run at once (pool, times processes).", ["pipeline"],
                     multiprocess_mode="livesum")
WORKER_SLOTS_BUSY = Gauge("buraq_worker_slots_busy", "Tasks running now.", ["pipeline"], multiprocess_mode="livesum")
