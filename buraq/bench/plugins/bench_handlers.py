"""Handlers for `buraq bench`: the work each one does is the thing measured.

Loaded by `buraq serve --plugins-dir` from this folder, like any user's local plugin.
"""

import os
import time

import redis.asyncio as aioredis

import buraq

_latencies = None
_redis = None


async def noop(task: buraq.Task) -> None:
    """No work: the engine's own cost per task."""


async def incr(task: buraq.Task) -> None:
    """One Redis round trip per task, written as a user would."""
    global _redis
    if _redis is None:
        _redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    await _redis.incr(task.options.get("counter", "bench:counter"))


async def latency(task: buraq.Task) -> None:
    """Record enqueue-to-start latency from the producer's timestamp (same host, same clock).

    One file per process, so several serve processes never interleave their lines.
    """
    global _latencies
    now = time.time()
    if task.payload.get("warmup"):
        return
    if _latencies is None:
        path = os.path.join(os.environ["BENCH_LATENCY_DIR"], f"{os.getpid()}.txt")
        _latencies = open(path, "a", buffering=1)
    _latencies.write(f"{now - task.payload['t']:.6f}\n")


@buraq.hookimpl
def register_handlers(register):
    register("bench.noop", noop)
    register("bench.incr", incr)
    register("bench.latency", latency)
