"""The yardstick for the INCR workload: a bare asyncio consumer with none of buraq's guarantees.

    python -m buraq.bench.bare REDIS_URL STREAM TASKS [--in-flight 100]

XREADGROUP COUNT up to 100, one coroutine per entry doing ``await INCR``, at most 100 in
flight, XACK in batches of whatever finished meanwhile. No leases, heartbeats, retries, DLQ,
metrics or decoding. It speaks Redis directly on purpose (it is what buraq is compared with,
not part of buraq). Prints one JSON line: tasks, seconds (first read to last ack) and rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

GROUP = "bare"
COUNTER = "bench:bare-counter"


async def drain(url: str, stream: str, tasks: int, in_flight: int = 100) -> dict[str, float]:
    """Consume ``tasks`` entries of ``stream``; return tasks, seconds and rate."""
    redis = aioredis.Redis.from_url(url)
    user = aioredis.Redis.from_url(url)  # the handler's own client, as with buraq's bench.incr
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    running: set[asyncio.Task[None]] = set()
    finished: list[bytes] = []
    slot, ready = asyncio.Event(), asyncio.Event()
    first = 0.0

    async def work(entry_id: bytes) -> None:
        await user.incr(COUNTER)
        finished.append(entry_id)
        ready.set()

    def done(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slot.set()

    async def acknowledge() -> None:  # one XACK for everything that finished meanwhile
        acked = 0
        while acked < tasks:
            await ready.wait()
            ready.clear()
            ids, finished[:] = list(finished), []
            acked += await redis.xack(stream, GROUP, *ids)

    acks = asyncio.create_task(acknowledge())
    while not acks.done():
        free = in_flight - len(running)
        if free <= 0:
            slot.clear()
            await slot.wait()
            continue
        reply = await redis.xreadgroup(GROUP, "bare-1", {stream: ">"}, count=free, block=100)
        for _, entries in reply or []:
            first = first or time.perf_counter()
            for entry_id, _fields in entries:
                task = asyncio.create_task(work(entry_id))
                running.add(task)
                task.add_done_callback(done)
    await acks
    seconds = time.perf_counter() - first
    await redis.delete(COUNTER)
    await redis.aclose()
    await user.aclose()
    return {"tasks": tasks, "seconds": round(seconds, 4), "rate": round(tasks / max(seconds, 1e-9), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m buraq.bench.bare")
    parser.add_argument("url")
    parser.add_argument("stream")
    parser.add_argument("tasks", type=int)
    parser.add_argument("--in-flight", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(drain(args.url, args.stream, args.tasks, args.in_flight))))


if __name__ == "__main__":
    main()
