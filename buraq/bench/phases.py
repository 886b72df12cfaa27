"""The phases of `buraq bench`: enqueue, drain with K serve processes, the bare INCR loop, latency."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from buraq import streams
from buraq.bench import procs
from buraq.bench.progress import Progress
from buraq.client import AsyncClient
from buraq.config import Pipeline
from buraq.errors import BuraqError

POLL = 0.02  # seconds between looks at the consumer group while draining (each costs the box some CPU)
ENQUEUE_CHUNK = 5000


@dataclass
class Bench:
    """One pipeline made for one phase: its folder, client and Redis connection."""

    url: str
    handler: str
    pool: int
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="buraq-bench-")))
    name: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        counter = f"bench:{{{self.name}}}:counter"
        (self.folder / "bench.yaml").write_text(f"name: {self.name}\nhandler: bench.{self.handler}\npool: {self.pool}\n"
                                                f"options:\n  counter: '{counter}'\n")
        self.counter = counter
        self.client = AsyncClient(self.url, pipelines=self.folder, plugins_dir=None)
        self.pipeline: Pipeline = self.client.pipeline(self.name)
        self.redis = aioredis.Redis.from_url(self.url)

    async def close(self) -> None:
        p = self.pipeline
        await self.redis.delete(p.stream, p.dlq, p.delayed, p.consumers, p.schedules, self.counter)
        await self.redis.aclose()
        await self.client.close()
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


async def used_memory_mb(redis: aioredis.Redis) -> float:
    return round(int((await redis.info("memory"))["used_memory"]) / 2**20, 1)


async def enqueue(bench: Bench, tasks: int, label: str = "enqueue") -> dict[str, Any]:
    """Add ``tasks`` tasks with the batch API, in chunks so the bar moves; return tasks, seconds, rate."""
    progress = Progress(label, tasks)
    started = time.perf_counter()
    for start in range(0, tasks, ENQUEUE_CHUNK):
        await bench.client.enqueue_many(bench.name, ({"n": i} for i in range(start, min(tasks, start + ENQUEUE_CHUNK))))
        progress.update(min(tasks, start + ENQUEUE_CHUNK))
    seconds = time.perf_counter() - started
    progress.finish()
    return {"tasks": tasks, "seconds": round(seconds, 4), "rate": round(tasks / seconds, 1)}


async def drain(bench: Bench, tasks: int, processes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start ``processes`` `buraq serve --burst`; time the first acknowledgement to the last.

    Returns the drain row and the memory seen: each process's RSS when it first showed up as a
    consumer (start), its last RSS (end) and its high-water mark (peak, VmHWM).
    """
    env = {"BENCH_REDIS_URL": bench.url}
    serving = [procs.start_serve(bench.folder, bench.url, f"bench-{i}", True, env) for i in range(processes)]
    memory: dict[str, list[float | None]] = {"start": [None] * processes, "end": [0.0] * processes,
                                              "peak": [0.0] * processes}
    progress = Progress("drain", tasks)
    first = last = None
    try:
        deadline = time.monotonic() + 60 + tasks / 500
        while True:
            state = await streams.queue_state(bench.redis, bench.pipeline)
            done = tasks - (state["queued"] or 0) - state["pending"] if state["group"] else 0
            now = time.perf_counter()
            if first is None and done > 0:
                first = now
            await _sample(bench, serving, memory)
            progress.update(done)
            if done >= tasks:
                last = now
                break
            if time.monotonic() > deadline or all(p.poll() is not None for p in serving):
                raise BuraqError(f"bench: the serve processes drained {done:,} of {tasks:,} tasks before "
                                 f"{'giving up' if time.monotonic() > deadline else 'all of them exited'}")
            await asyncio.sleep(POLL)
        progress.finish()
        await _wait_exit(serving)
    finally:
        procs.stop(serving)
    seconds = max(last - first, 1e-9)
    row = {"handler": bench.handler, "processes": processes, "pool": bench.pool, "tasks": tasks,
           "seconds": round(seconds, 4), "rate": round(tasks / seconds, 1)}
    if bench.handler == "incr":
        row["counter"] = int(await bench.redis.get(bench.counter) or 0)
    return row, memory


async def _sample(bench: Bench, serving: list[subprocess.Popen[bytes]], memory: dict[str, list[Any]]) -> None:
    if any(start is None for start in memory["start"]):
        names = {c["name"] for c in (await streams.status(bench.redis, bench.pipeline))["consumers"]}
    else:
        names = set()
    for i, process in enumerate(serving):
        seen = procs.memory_mb(process.pid)
        if seen is None:
            continue
        memory["end"][i], memory["peak"][i] = seen
        if memory["start"][i] is None and f"bench-{i}" in names:
            memory["start"][i] = seen[0]


async def _wait_exit(serving: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """Burst mode exits by itself once idle; wait for that (stop() then handles stragglers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.poll() is None for p in serving):
        await asyncio.sleep(0.05)


async def bare_incr(bench: Bench, tasks: int) -> dict[str, Any]:
    """The bare asyncio INCR loop on the same Redis, over ``tasks`` entries enqueued the same way."""
    await enqueue(bench, tasks, "bare enq")
    command = [sys.executable, "-m", "buraq.bench.bare", bench.url, bench.pipeline.stream, str(tasks)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise BuraqError(f"bench: the bare INCR loop failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)
