"""Enqueue-to-start latency at a steady, light rate.

    python bench/latency.py --rate 100 --seconds 10

Starts one `buraq serve`, enqueues one task at a time at the given rate with the producer's
timestamp in the payload, and has the handler record when it started. Prints p50/p95/p99/max.
Uses $REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from buraq import Client

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"latency-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "latency.yaml").write_text(f"name: {name}\nhandler: bench.latency\npool: 50\n")
        record = Path(folder, "latencies.txt")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, BENCH_LATENCY_FILE=str(record))
        serve = subprocess.Popen([sys.executable, "-m", "buraq", "--log-level", "warning", "serve", folder,
                                  "--plugins-dir", str(HERE / "plugins"), "--redis-url", url,
                                  "--listen", f"127.0.0.1:{port}"], env=env)
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            total = int(args.rate * args.seconds)
            with Client(url, pipelines=folder) as client:
                client.enqueue(name, {"t": time.time()})  # warm-up, not counted
                time.sleep(0.5)
                record.write_text("")
                start = time.perf_counter()
                for i in range(total):
                    target = start + i / args.rate
                    pause = target - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    client.enqueue(name, {"t": time.time()})
            deadline = time.monotonic() + 30
            while len(record.read_text().splitlines()) < total and time.monotonic() < deadline:
                time.sleep(0.05)
            values = [float(line) * 1000 for line in record.read_text().splitlines()]
        finally:
            serve.terminate()
            serve.wait(30)
    print(f"{len(values)} tasks at {args.rate:g}/s: enqueue-to-start latency "
          f"p50 {percentile(values, 0.50):.2f} ms, p95 {percentile(values, 0.95):.2f} ms, "
          f"p99 {percentile(values, 0.99):.2f} ms, max {max(values):.2f} ms")


if __name__ == "__main__":
    main()
