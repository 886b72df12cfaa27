"""Drain benchmark: enqueue N tasks, start one `buraq serve`, time how fast it empties the stream.

    python bench/drain.py --tasks 10000 [--handler bench.noop|bench.incr] [--pool 100] [--runs 3]

Uses $REDIS_URL (default redis://127.0.0.1:6379/0). Prints enqueue rate and drain rate per run and
the median. Drain time runs from the first acknowledged entry to the last, read from the consumer
group every 5 ms, so process start-up is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from buraq import Client

HERE = Path(__file__).resolve().parent


def one_run(url: str, tasks: int, handler: str, pool: int) -> tuple[float, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    stream = f"buraq:{{{name}}}:tasks"
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "bench.yaml").write_text(f"name: {name}\nhandler: {handler}\npool: {pool}\n")
        with Client(url, pipelines=folder) as client:
            started = time.perf_counter()
            client.enqueue_many(name, ({"n": i} for i in range(tasks)))
            enqueue_rate = tasks / (time.perf_counter() - started)
        conn = redis.Redis.from_url(url)
        env = dict(os.environ, BENCH_REDIS_URL=url)
        serve = subprocess.Popen([sys.executable, "-m", "buraq", "--log-level", "warning", "serve", folder,
                                  "--plugins-dir", str(HERE / "plugins"), "--redis-url", url, "--listen", "off"],
                                 env=env)
        try:
            first = last = None
            while True:
                groups = conn.xinfo_groups(stream)
                read = groups[0]["entries-read"] if groups else 0
                pending = groups[0]["pending"] if groups else 0
                done = (read or 0) - pending
                now = time.perf_counter()
                if first is None and done > 0:
                    first = now
                if done >= tasks:
                    last = now
                    break
                time.sleep(0.005)
        finally:
            serve.terminate()
            serve.wait(30)
            conn.delete(stream, f"buraq:{{{name}}}:dlq", f"buraq:{{{name}}}:delayed", "bench:counter")
        return enqueue_rate, tasks / max(last - first, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--handler", default="bench.noop")
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    results = []
    for run in range(1, args.runs + 1):
        enqueue_rate, drain_rate = one_run(url, args.tasks, args.handler, args.pool)
        results.append((enqueue_rate, drain_rate))
        print(f"run {run}: enqueue {enqueue_rate:,.0f} tasks/s, drain {drain_rate:,.0f} tasks/s")
    print(f"median of {args.runs}: enqueue {statistics.median(r[0] for r in results):,.0f} tasks/s, "
          f"drain {statistics.median(r[1] for r in results):,.0f} tasks/s "
          f"({args.tasks:,} tasks, {args.handler}, pool {args.pool}, one process)")


if __name__ == "__main__":
    main()
