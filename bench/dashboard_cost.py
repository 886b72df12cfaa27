"""What the dashboard costs the engine: drain N no-op tasks with one `buraq serve` three ways.

    python bench/dashboard_cost.py [--tasks 100000] [--runs 3] [--pool 100] [--modes off,on,watched]

  off      `--dashboard off`: /metrics only
  on       the dashboard is on (its sampler thread runs once a second), nobody is watching
  watched  a headless Chromium page is open on it, polling /api/overview every second and the
           charts every two (needs the `playwright` package and /usr/bin/chromium)

Each run enqueues the backlog, starts serve (and, for `watched`, opens the page as soon as serve
listens); the drain time runs from the first acknowledged entry to the last, read from the consumer
group every 5 ms, as bench/drain.py does. The dashboard's costs are per second (a sample, a poll),
so the default backlog is large enough for a drain of seconds, not a fraction of one. Modes take
turns run by run, so a machine whose load drifts treats them alike. Prints each run, then the
medians, with the serve process's CPU seconds per 1,000 tasks over the drain and its CPU use while
idle afterwards (the page, in `watched`, still polling).
Uses $REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import redis

from buraq import Client

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODES = ("off", "on", "watched")


class Run(NamedTuple):
    rate: float  # tasks/s
    cpu_per_1000: float  # serve CPU seconds per 1,000 tasks, over the drain
    idle_cpu: float  # percent of one core, queue empty
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _wait_up(port: int, serve: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise SystemExit(f"buraq serve exited with {serve.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            return
        time.sleep(0.05)
    raise SystemExit("buraq serve did not start")


@contextlib.contextmanager
def _serving(folder: str, url: str, mode: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = dict(os.environ, BENCH_REDIS_URL=url)
    env.pop("BURAQ_DASHBOARD_TOKEN", None)
    serve = subprocess.Popen([sys.executable, "-m", "buraq", "--log-level", "warning", "serve", folder,
                              "--plugins-dir", str(HERE / "plugins"), "--redis-url", url,
                              "--listen", f"127.0.0.1:{port}", "--dashboard", "off" if mode == "off" else "on"],
                             env=env)
    try:
        _wait_up(port, serve)
        yield serve, port
    finally:
        serve.terminate()
        serve.wait(30)


def _drain(conn: redis.Redis, stream: str, tasks: int, pid: int) -> tuple[float, float]:
    """(seconds, serve CPU seconds) from the first acknowledged entry to the last."""
    first = cpu_first = None
    while True:
        groups = conn.xinfo_groups(stream)
        done = ((groups[0]["entries-read"] or 0) - groups[0]["pending"]) if groups else 0
        now = time.perf_counter()
        if first is None and done > 0:
            first, cpu_first = now, _cpu_seconds(pid)
        if done >= tasks:
            return max(now - (first or now), 1e-9), _cpu_seconds(pid) - (cpu_first or 0.0)
        time.sleep(0.005)


def _enqueue(url: str, folder: str, name: str, tasks: int) -> None:
    """Enqueue from a thread: Playwright's sync API keeps an event loop running in this one."""
    def work() -> None:
        with Client(url, pipelines=folder, plugins_dir=None) as client:
            client.enqueue_many(name, ({"n": i} for i in range(tasks)))

    with ThreadPoolExecutor(1) as pool:
        pool.submit(work).result()


def _idle_cpu(pid: int, seconds: float, page: Any) -> float:
    """The serve process's CPU use (percent of one core) while the queue is empty (and the page polls)."""
    before, started = _cpu_seconds(pid), time.perf_counter()
    if page is not None:
        page.wait_for_timeout(seconds * 1000)  # keeps Playwright's loop turning
    else:
        time.sleep(seconds)
    return 100 * (_cpu_seconds(pid) - before) / (time.perf_counter() - started)


def one_run(url: str, tasks: int, pool: int, mode: str, browser: Any, idle_seconds: float) -> Run:
    """Drain rate, serve CPU per 1,000 tasks, and idle CPU for one mode, the backlog enqueued first."""
    name = f"dashcost-{uuid.uuid4().hex[:8]}"
    stream = f"buraq:{{{name}}}:tasks"
    conn = redis.Redis.from_url(url)
    page = browser.new_page() if mode == "watched" else None
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "bench.yaml").write_text(f"name: {name}\nhandler: bench.noop\npool: {pool}\n")
        try:
            _enqueue(url, folder, name, tasks)
            with _serving(folder, url, mode) as (serve, port), ThreadPoolExecutor(1) as watcher:
                drained = watcher.submit(_drain, conn, stream, tasks, serve.pid)  # timed whatever the page does
                if page is not None:  # someone opens the dashboard as the drain begins
                    page.goto(f"http://127.0.0.1:{port}/")
                seconds, cpu = drained.result()
                idle = _idle_cpu(serve.pid, idle_seconds, page)
                if page is not None:
                    assert page.locator(f'article[data-pipeline="{name}"]').count() == 1, "the page never showed"
        finally:
            if page is not None:
                page.close()
            conn.delete(stream, f"buraq:{{{name}}}:dlq", f"buraq:{{{name}}}:delayed")
            conn.close()
    return Run(tasks / seconds, 1000 * cpu / tasks, idle)


@contextlib.contextmanager
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # only the watched mode needs it

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured after each drain")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of off,on,watched")
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    modes = [m for m in args.modes.split(",") if m]
    results: dict[str, list[Run]] = {mode: [] for mode in modes}
    with _browser() if "watched" in modes else contextlib.nullcontext() as browser:
        for run in range(1, args.runs + 1):
            for mode in modes:
                result = one_run(url, args.tasks, args.pool, mode, browser, args.idle)
                results[mode].append(result)
                print(f"run {run} {mode:8}: drain {result.rate:,.0f} tasks/s, serve CPU {result.cpu_per_1000:.3f} s "
                      f"per 1,000 tasks, idle {result.idle_cpu:.1f}% CPU", flush=True)
    base = statistics.median(r.rate for r in results["off"]) if "off" in results else None
    print(f"medians of {args.runs} ({args.tasks:,} bench.noop tasks, pool {args.pool}, one process):")
    for mode, rows in results.items():
        rate = statistics.median(r.rate for r in rows)
        versus = f" ({100 * (rate / base - 1):+.1f}% vs off)" if base else ""
        print(f"  {mode:8} drain {rate:,.0f} tasks/s{versus}, serve CPU "
              f"{statistics.median(r.cpu_per_1000 for r in rows):.3f} s per 1,000 tasks, "
              f"idle {statistics.median(r.idle_cpu for r in rows):.1f}% CPU")


if __name__ == "__main__":
    main()
