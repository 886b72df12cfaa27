"""Enqueue-to-start latency at a steady rate: one task per `enqueue` call, as a web app would send them.

The producer's timestamp travels in the payload and the handler (bench.latency) writes how long
ago that was when it starts, one file per serve process; both ends read the same clock.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from buraq import streams
from buraq.bench import procs
from buraq.bench.phases import Bench
from buraq.bench.progress import Progress
from buraq.bench.report import percentile
from buraq.errors import BuraqError

WARMUP = 20


async def measure(bench: Bench, rate: float, tasks: int, processes: int) -> dict[str, Any]:
    """Send ``tasks`` tasks at ``rate`` per second to ``processes`` serve processes; return percentiles in ms."""
    with tempfile.TemporaryDirectory(prefix="buraq-bench-latency-") as folder:
        env = {"BENCH_REDIS_URL": bench.url, "BENCH_LATENCY_DIR": folder}
        serving = [procs.start_serve(bench.folder, bench.url, f"bench-{i}", False, env) for i in range(processes)]
        try:
            await _wait_for_consumers(bench, serving)
            for _ in range(WARMUP):  # first connections, first imports: not counted
                await bench.client.enqueue(bench.name, {"t": time.time(), "warmup": True})
            await asyncio.sleep(0.3)
            await _send(bench, rate, tasks)
            values = await _collect(Path(folder), tasks)
        finally:
            procs.stop(serving)
    millis = [v * 1000 for v in values]
    return {"rate": rate, "tasks": len(millis), "p50_ms": round(percentile(millis, 0.50), 3),
            "p95_ms": round(percentile(millis, 0.95), 3), "p99_ms": round(percentile(millis, 0.99), 3),
            "max_ms": round(max(millis), 3)}


async def _wait_for_consumers(bench: Bench, serving: list[Any], timeout: float = 60.0) -> None:
    """Ready means every process has read from the group once (so it is blocked in XREADGROUP now)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            consumers = (await streams.status(bench.redis, bench.pipeline))["consumers"]
        except Exception:  # no stream yet
            consumers = []
        if len(consumers) >= len(serving):
            return
        if any(p.poll() is not None for p in serving):
            raise BuraqError("bench: a serve process exited before it was ready (see its output above)")
        await asyncio.sleep(0.05)
    raise BuraqError(f"bench: the serve processes were not ready within {timeout:.0f}s")


async def _send(bench: Bench, rate: float, tasks: int) -> None:
    progress = Progress("latency", tasks)
    start = time.perf_counter()
    for i in range(tasks):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        await bench.client.enqueue(bench.name, {"t": time.time()})
        progress.update(i + 1)
    progress.finish()


async def _collect(folder: Path, tasks: int, timeout: float = 30.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        values = [float(line) for path in folder.iterdir() for line in path.read_text().splitlines() if line]
        if len(values) >= tasks or time.monotonic() > deadline:
            if len(values) < tasks:
                raise BuraqError(f"bench: only {len(values)} of {tasks} latency tasks started within {timeout:.0f}s")
            return values
        await asyncio.sleep(0.05)
