"""What a benchmark run reports: the machine, percentiles, the JSON result file and a short summary."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from buraq import __version__

FORMAT = 1


def machine(redis_version: str) -> dict[str, Any]:
    """The facts a number means nothing without: CPU, cores, Python, Redis and buraq versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "python": platform.python_version(),
            "redis": redis_version, "buraq": __version__}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (unsorted); 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def write(result: dict[str, Any], output: Path) -> list[Path]:
    """Write ``result`` to ``output`` and a timestamped copy beside it; return both paths."""
    output.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(result["finished_at"]).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    copy = output.parent / f"bench-{stamp}.json"
    text = json.dumps(result, indent=2) + "\n"
    for path in (output, copy):
        path.write_text(text)
    return [output, copy]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summary(result: dict[str, Any]) -> str:
    """The human-readable lines printed at the end of a run."""
    enqueue = result["enqueue"]
    lines = [f"enqueue   {enqueue['tasks']:,} tasks in {enqueue['seconds']:.2f}s: {enqueue['rate']:,.0f} tasks/s"]
    for run in result["drain"]:
        lines.append(f"drain     {run['tasks']:,} {run['handler']} tasks, {run['processes']} process(es), pool "
                     f"{run['pool']}: {run['seconds']:.2f}s, {run['rate']:,.0f} tasks/s")
    bare = result.get("bare_incr")
    if bare:
        lines.append(f"bare loop {bare['tasks']:,} INCR tasks: {bare['rate']:,.0f} tasks/s "
                     f"(buraq is {100 * result['incr_vs_bare']:.0f}% of it)")
    latency = result["latency"]
    if latency["tasks"]:
        lines.append(f"latency   {latency['tasks']:,} tasks at {latency['rate']:g}/s: p50 {latency['p50_ms']:.2f} ms, "
                     f"p95 {latency['p95_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms")
    rss = result["rss_mb"]
    lines.append(f"rss       start {rss['start']:.1f} MiB, peak per process {', '.join(f'{p:.1f}' for p in rss['peak'])} MiB")
    memory = result.get("redis_memory_mb")
    if memory:
        lines.append(f"redis     used memory {memory['start']:.1f} MiB before, {memory['enqueued']:.1f} enqueued, "
                     f"{memory['end']:.1f} after the drain ({memory['entries_left']:,} entries left in the stream)")
    return "\n".join(lines)
