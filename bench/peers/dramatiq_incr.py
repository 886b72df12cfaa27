"""Dramatiq's side of bench/peers/compare.py: `enqueue N KEY`, `worker 0 KEY`, `cleanup 0 KEY`.

A plain actor doing one INCR through a redis-py client, as Dramatiq's docs would have it.
Dramatiq actors are synchronous: one worker process, its default 8 threads.
"""

from __future__ import annotations

import os
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

URL = os.environ["BENCH_REDIS_URL"]
KEY = sys.argv[3] if __name__ == "__main__" else os.environ["BENCH_KEY"]
NAMESPACE = "dramatiq-bench-" + KEY.rpartition(":")[2]
broker = RedisBroker(url=URL, namespace=NAMESPACE)
dramatiq.set_broker(broker)
counter = redis.Redis.from_url(URL)


@dramatiq.actor(max_retries=3)
def incr() -> None:
    counter.incr(KEY)


def main(verb: str, count: str) -> None:
    if verb == "enqueue":
        started = time.perf_counter()
        for _ in range(int(count)):
            incr.send()
        print(time.perf_counter() - started, dramatiq.__version__)
    elif verb == "worker":
        os.environ["BENCH_KEY"] = KEY
        os.chdir(os.path.dirname(os.path.abspath(__file__)))
        os.execvp("dramatiq", ["dramatiq", "dramatiq_incr", "--processes", "1", "--threads", "8"])
    elif verb == "cleanup":
        keys = list(counter.scan_iter(f"{NAMESPACE}*"))
        if keys:
            counter.delete(*keys)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
