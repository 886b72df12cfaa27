"""`buraq bench`: enqueue, drain, latency and memory, measured end to end on a real Redis.

Each phase runs against real `buraq serve` subprocesses with every delivery guarantee on (leases,
heartbeats, atomic retries and DLQ moves). The result is one JSON file (format 1, see
docs/performance.md) that dashboards chart, plus a summary on stdout and a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

HANDLERS = ("noop", "incr")
DEFAULT_OUTPUT = Path(".buraq") / "bench" / "latest.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `buraq bench` options (the CLI keeps only the wiring)."""
    parser.add_argument("--tasks", type=_at_least(1), default=20_000, help="tasks to enqueue and drain (default 20000)")
    parser.add_argument("--processes", type=_at_least(1), default=1, help="serve processes draining (default 1)")
    parser.add_argument("--pool", type=_at_least(1), default=100, help="pool of the bench pipeline (default 100)")
    parser.add_argument("--handler", choices=HANDLERS, default="noop",
                        help="noop, or incr: one `await redis.incr` per task (default noop)")
    parser.add_argument("--runs", type=_at_least(1), default=1, help="drain runs; the median is reported (default 1)")
    parser.add_argument("--rate", type=_positive_float, default=500.0, help="tasks/s for the latency phase (default 500)")
    parser.add_argument("--latency-tasks", type=_at_least(0), default=5000,
                        help="tasks sent in the latency phase; 0 skips it (default 5000)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="the JSON result (default .buraq/bench/latest.json; a timestamped copy goes beside it)")


def run(args: argparse.Namespace, url: str) -> int:
    """Run every phase against ``url``, write the JSON result and print the summary."""
    from buraq.bench import report

    result = asyncio.run(_run(args, url))
    paths = report.write(result, args.output)
    print(report.summary(result))
    print(f"result: {paths[0]} (copy: {paths[1]})", file=sys.stderr)
    return 0


async def _run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from buraq.bench import latency, phases, report

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k in ("tasks", "processes", "pool", "handler", "runs", "rate", "latency_tasks", "output")}
    runs = [await _one_run(url, args) for _ in range(args.runs)]
    drains = [run["drain"] for run in runs]
    result: dict[str, Any] = {"format": report.FORMAT, "finished_at": "", "machine": report.machine(runs[0]["redis"]),
                              "settings": settings, "enqueue": _median_row([run["enqueue"] for run in runs]),
                              "drain": drains}
    if args.handler == "incr":
        bares = [run["bare"] for run in runs]
        result["bare_incr"] = {**_median_row(bares), "runs": [row["rate"] for row in bares]}
        result["incr_vs_bare"] = round(_median_row(drains)["rate"] / result["bare_incr"]["rate"], 3)
    result["latency"] = {"rate": args.rate, "tasks": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    if args.latency_tasks:
        bench = phases.Bench(url, "latency", args.pool)
        try:
            result["latency"] = await latency.measure(bench, args.rate, args.latency_tasks, args.processes)
        finally:
            await bench.close()
    memory = runs[-1]["memory"]
    starts = [s for s in memory["start"] if s is not None]
    result["rss_mb"] = {"start": max(starts) if starts else 0.0, "peak": memory["peak"], "end": memory["end"]}
    result["redis_memory_mb"] = runs[-1]["redis_memory"]
    result["finished_at"] = report.now_iso()
    return result


async def _one_run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Enqueue and drain once (and with INCR, the bare loop right after, under the same machine load)."""
    from buraq import streams
    from buraq.bench import phases

    bench = phases.Bench(url, args.handler, args.pool)
    run: dict[str, Any] = {"redis_memory": {}}
    try:
        run["redis"] = (await bench.redis.info("server"))["redis_version"]
        run["redis_memory"]["start"] = await phases.used_memory_mb(bench.redis)
        run["enqueue"] = await phases.enqueue(bench, args.tasks)
        run["redis_memory"]["enqueued"] = await phases.used_memory_mb(bench.redis)
        run["drain"], run["memory"] = await phases.drain(bench, args.tasks, args.processes)
        run["redis_memory"]["end"] = await phases.used_memory_mb(bench.redis)
        run["redis_memory"]["entries_left"] = await streams.length(bench.redis, bench.pipeline.stream)
    finally:
        await bench.close()
    if args.handler == "incr":
        run["bare"] = await _bare(url, args)
    return run


async def _bare(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from buraq.bench import phases

    bench = phases.Bench(url, "noop", args.pool)
    try:
        return await phases.bare_incr(bench, args.tasks)
    finally:
        await bench.close()


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the median rate (a real run, not an average of several)."""
    return sorted(rows, key=lambda row: row["rate"])[len(rows) // 2]


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
