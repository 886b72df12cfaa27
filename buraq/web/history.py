"""The dashboard's memory: one sample a second of the same metrics Prometheus scrapes.

Reading the registry (not the engine) keeps the dashboard honest: what it charts is what
/metrics says, summed over every process when `serve --processes` runs several.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("buraq.web")
SAMPLE_EVERY = 1.0
KEEP_SAMPLES = 900  # 15 minutes at one a second
RATE_WINDOW = 5  # samples: rates and latency quantiles are over the last five seconds

COUNTERS = {"buraq_tasks_processed_total": "processed", "buraq_tasks_failed_total": "failed",
            "buraq_tasks_retried_total": "retried", "buraq_tasks_dlq_total": "dead",
            "buraq_tasks_reclaimed_total": "reclaimed"}
GAUGES = {"buraq_worker_slots": "slots", "buraq_worker_slots_busy": "busy", "buraq_queue_depth": "depth",
          "buraq_queue_pending": "pending", "buraq_oldest_pending_age_seconds": "oldest_pending_age",
          "buraq_dlq_depth": "dlq", "buraq_delayed_tasks": "delayed"}
LATENCY_BUCKETS = "buraq_task_latency_seconds_bucket"


@dataclass
class Sample:
    at: float
    values: dict[str, float] = field(default_factory=dict)
    latency: dict[float, float] = field(default_factory=dict)  # cumulative count per upper bound


def read_samples(families: Iterable[Any], pipelines: Sequence[str], at: float) -> dict[str, Sample]:
    """One Sample per pipeline from collected metric families (counters summed over labels like reason)."""
    samples = {name: Sample(at) for name in pipelines}
    for family in families:
        for metric in family.samples:
            sample = samples.get(metric.labels.get("pipeline", ""))
            if sample is None:
                continue
            key = COUNTERS.get(metric.name) or GAUGES.get(metric.name)
            if key is not None:
                sample.values[key] = sample.values.get(key, 0.0) + metric.value
            elif metric.name == LATENCY_BUCKETS:
                bound = float(metric.labels["le"])
                sample.latency[bound] = sample.latency.get(bound, 0.0) + metric.value
    return samples


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The q-quantile of observations between two cumulative bucket snapshots, interpolated as
    Prometheus's histogram_quantile does; None when nothing was observed."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, count
    return bounds[-1]


class History:
    """A background thread that samples every second and answers the dashboard's questions."""

    def __init__(self, collect: Callable[[], Iterable[Any]], pipelines: Sequence[str]) -> None:
        self._collect = collect
        self.pipelines = list(pipelines)
        self._samples: dict[str, deque[Sample]] = {name: deque(maxlen=KEEP_SAMPLES) for name in self.pipelines}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="buraq-dashboard-history", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sample_now(self) -> None:
        try:
            taken = read_samples(self._collect(), self.pipelines, time.time())
        except Exception as exc:  # the dashboard must never take the worker down
            log.warning("dashboard sample failed: %s", exc)
            return
        with self._lock:
            for name, sample in taken.items():
                self._samples[name].append(sample)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample_now()
            self._stop.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - started)))

    def latest(self, pipeline: str) -> dict[str, Any]:
        """Current values, rates per second and latency quantiles (ms) over the last few seconds."""
        with self._lock:
            samples = list(self._samples[pipeline])[-(RATE_WINDOW + 1):]
        if not samples:
            return {"values": {}, "rates": {}, "latency_ms": {"p50": None, "p99": None}}
        first, last = samples[0], samples[-1]
        return {"values": dict(last.values), "rates": _rates(first, last),
                "latency_ms": _latency_ms(first, last)}

    def series(self, pipeline: str, seconds: float) -> dict[str, list[float | None]]:
        """Per-second series for charts: rates, latency quantiles, slots and queue gauges."""
        with self._lock:
            samples = [s for s in self._samples[pipeline] if s.at >= time.time() - seconds - SAMPLE_EVERY]
        out: dict[str, list[float | None]] = {key: [] for key in (
            "t", "processed", "failed", "retried", "latency_p50_ms", "latency_p99_ms",
            "busy", "slots", "depth", "pending", "dlq", "delayed")}
        for index in range(1, len(samples)):
            before, after = samples[max(0, index - RATE_WINDOW)], samples[index]
            rates = _rates(samples[index - 1], after)
            latency = _latency_ms(before, after)
            out["t"].append(after.at)
            for key in ("processed", "failed", "retried"):
                out[key].append(rates.get(key))
            out["latency_p50_ms"].append(latency["p50"])
            out["latency_p99_ms"].append(latency["p99"])
            for key in ("busy", "slots", "depth", "pending", "dlq", "delayed"):
                out[key].append(after.values.get(key))
        return out


def _rates(first: Sample, last: Sample) -> dict[str, float]:
    elapsed = last.at - first.at
    if elapsed <= 0:
        return {}
    return {key: max(0.0, last.values.get(key, 0.0) - first.values.get(key, 0.0)) / elapsed
            for key in COUNTERS.values()}


def _latency_ms(first: Sample, last: Sample) -> dict[str, float | None]:
    def ms(q: float) -> float | None:
        value = quantile(q, first.latency, last.latency)
        return None if value is None else round(value * 1000, 3)

    return {"p50": ms(0.5), "p99": ms(0.99)}
