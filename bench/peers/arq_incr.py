"""arq's side of bench/peers/compare.py: `enqueue N KEY`, `worker 0 KEY`, `cleanup 0 KEY`.

An async job doing one `await INCR` on the worker's own connection (ctx['redis']), max_jobs 100.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import arq
from arq.connections import RedisSettings, create_pool

URL = os.environ["BENCH_REDIS_URL"]
KEY = sys.argv[3] if __name__ == "__main__" else os.environ["BENCH_KEY"]
QUEUE = "arq-bench:" + KEY.rpartition(":")[2]


async def incr(ctx: dict) -> None:
    await ctx["redis"].incr(KEY)


class WorkerSettings:
    functions = [incr]
    redis_settings = RedisSettings.from_dsn(URL)
    queue_name = QUEUE
    max_jobs = 100
    keep_result = 0
    log_results = False


async def enqueue(count: int) -> float:
    pool = await create_pool(RedisSettings.from_dsn(URL), default_queue_name=QUEUE)
    started = time.perf_counter()
    for start in range(0, count, 500):  # 500 enqueue_job calls in flight at a time
        await asyncio.gather(*(pool.enqueue_job("incr") for _ in range(start, min(count, start + 500))))
    seconds = time.perf_counter() - started
    await pool.aclose()
    return seconds


async def cleanup() -> None:
    pool = await create_pool(RedisSettings.from_dsn(URL))
    keys = [k async for k in pool.scan_iter(f"{QUEUE}*")] + [k async for k in pool.scan_iter("arq:job:*")]
    if keys:
        await pool.delete(*keys)
    await pool.aclose()


def main(verb: str, count: str) -> None:
    if verb == "enqueue":
        print(asyncio.run(enqueue(int(count))), arq.VERSION)
    elif verb == "worker":
        # As `arq arq_incr.WorkerSettings` does, but logging warnings only: its default logs two
        # lines per job, which would measure the terminal rather than arq.
        logging.basicConfig(level=logging.WARNING)
        arq.run_worker(WorkerSettings)
    elif verb == "cleanup":
        asyncio.run(cleanup())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
