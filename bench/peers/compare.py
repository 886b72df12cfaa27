"""Compare buraq with other Redis task queues doing the same work: one INCR per task.

    /tmp/peers-venv/bin/python bench/peers/compare.py --tasks 20000 [--runs 3] [--only buraq,arq]

Each system has an adapter here (buraq_incr.py, dramatiq_incr.py, arq_incr.py) with two verbs:
`enqueue N KEY` (add N tasks, print the seconds it took) and `worker 0 KEY` (one worker process
until killed). This harness enqueues, starts one worker, and times the drain by the INCR counter
KEY every system's task increments: from the first increment to the N-th. Same Redis, same
machine, one worker process each, about 100 tasks in flight where the system lets you say so.
See docs/performance.md for how to install the peers (a throwaway venv, not buraq's deps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PEERS = {
    # name: (python to run its adapter with, adapter file)
    "buraq": (os.environ.get("BURAQ_PYTHON", str(ROOT / ".venv" / "bin" / "python")), "buraq_incr.py"),
    "dramatiq": (sys.executable, "dramatiq_incr.py"),
    "arq": (sys.executable, "arq_incr.py"),
}


def one_run(url: str, peer: str, tasks: int) -> tuple[float, float, str]:
    python, adapter = PEERS[peer]
    key = f"bench:peers:{peer}:{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, BENCH_REDIS_URL=url)
    conn = redis.Redis.from_url(url)
    enqueued = subprocess.run([python, str(HERE / adapter), "enqueue", str(tasks), key], env=env,
                              capture_output=True, text=True, check=True).stdout.split()
    seconds, version = float(enqueued[0]), enqueued[1]
    worker = subprocess.Popen([python, str(HERE / adapter), "worker", "0", key], env=env,
                              stdout=subprocess.DEVNULL)
    try:
        first = None
        deadline = time.monotonic() + 120 + tasks / 200
        while True:
            count = int(conn.get(key) or 0)
            now = time.perf_counter()
            if first is None and count > 0:
                first = now
            if count >= tasks:
                break
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"{peer}: {count} of {tasks} tasks done when its worker "
                                 f"{'timed out' if worker.poll() is None else 'exited'}")
            time.sleep(0.005)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        subprocess.run([python, str(HERE / adapter), "cleanup", "0", key], env=env, capture_output=True)
        conn.delete(key)
    return tasks / seconds, tasks / max(now - first, 1e-9), version


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(PEERS), help="comma-separated: " + ", ".join(PEERS))
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    rows = []
    for peer in args.only.split(","):
        runs = [one_run(url, peer, args.tasks) for _ in range(args.runs)]
        for enq, drain, _ in runs:
            print(f"{peer}: enqueue {enq:,.0f}/s, drain {drain:,.0f}/s", file=sys.stderr)
        rows.append((peer, runs[0][2], statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                     [round(r[1]) for r in runs]))
    print(f"\n{args.tasks:,} tasks, one INCR each, one worker process, median of {args.runs} run(s), Redis at {url}")
    print(f"| {'system':<9} | {'version':<8} | {'enqueue tasks/s':>15} | {'drain tasks/s':>13} | runs")
    print(f"|{'-' * 11}|{'-' * 10}|{'-' * 17}|{'-' * 15}|------")
    for peer, version, enq, drain, each in rows:
        print(f"| {peer:<9} | {version:<8} | {enq:>15,.0f} | {drain:>13,.0f} | {', '.join(f'{r:,}' for r in each)}")


if __name__ == "__main__":
    main()
