"""The dashboard's JSON API: what the page shows, and the two things it may change (DLQ replay, purge).

Every function takes plain arguments and returns JSON-ready data; routing, auth and HTTP live in
buraq/web/app.py. Redis calls run on the serve process's event loop (``Context.run``), so the API
uses the same client, connection pool and retry rules as the engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from buraq import __version__, dlq
from buraq.config import Pipeline
from buraq.web import charts
from buraq.web.history import History

T = TypeVar("T")
PATTERN_SCAN = 1000  # failure patterns look at the newest this many DLQ entries
REDIS_TIMEOUT = 10.0


class NotFound(Exception):
    """An API path named a pipeline or DLQ entry that does not exist."""


class BadRequest(Exception):
    """An API call whose arguments make no sense; the message says why."""


@dataclass
class Context:
    pipelines: Sequence[Pipeline]
    history: History
    redis: Redis
    loop: asyncio.AbstractEventLoop
    processes: Callable[[], int]
    bench_results: Path

    def run(self, work: Callable[[Redis], Awaitable[T]]) -> T:
        """Run a Redis step on the serve loop from an HTTP thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(_call(work, self.redis), self.loop).result(REDIS_TIMEOUT)

    def pipeline(self, name: str) -> Pipeline:
        for pipeline in self.pipelines:
            if pipeline.name == name:
                return pipeline
        raise NotFound(f"no pipeline named {name!r}")


async def _call(work: Callable[[Redis], Awaitable[T]], redis: Redis) -> T:
    return await work(redis)


def overview(context: Context) -> dict[str, Any]:
    pipelines = []
    for pipeline in context.pipelines:
        latest = context.history.latest(pipeline.name)
        values = latest["values"]
        slots, busy = values.get("slots", 0.0), values.get("busy", 0.0)
        pipelines.append({
            "name": pipeline.name, "stream": pipeline.stream, "handler": pipeline.handler, "pool": pipeline.pool,
            "totals": {key: values.get(key, 0.0) for key in ("processed", "failed", "retried", "dead", "reclaimed")},
            "rates": latest["rates"], "latency_ms": latest["latency_ms"],
            "slots": slots, "busy": busy, "utilisation": busy / slots if slots else 0.0,
            "queue": {key: values.get(key) for key in ("depth", "pending", "oldest_pending_age", "dlq", "delayed")},
        })
    # has_bench lets the page skip /api/bench until a result exists (a 404 is a console error in browsers)
    return {"version": __version__, "processes": context.processes(), "at": time.time(), "pipelines": pipelines,
            "has_bench": context.bench_results.is_file()}


def series(context: Context, name: str, seconds: float) -> dict[str, Any]:
    context.pipeline(name)
    return {"pipeline": name, **context.history.series(name, _window(seconds))}


def chart_svgs(context: Context, name: str, seconds: float) -> dict[str, str]:
    """The pipeline's charts, drawn on the server from the same series /api/series returns."""
    data = series(context, name, seconds)
    times = data["t"]
    utilisation = [None if b is None or not s else 100 * b / s for b, s in zip(data["busy"], data["slots"])]
    def chart(title: str, lines: dict[str, Any], unit: str = "", **style: Any) -> str:
        return charts.line_chart(title, times, lines, unit, window=seconds, **style)

    return {
        "throughput": chart("Throughput (tasks/s)", {
            "processed": data["processed"], "failed": data["failed"], "retried": data["retried"]}, "/s"),
        "latency": chart("Enqueue-to-start latency (ms)", {
            "p50": data["latency_p50_ms"], "p99": data["latency_p99_ms"]}, "ms"),
        "utilisation": chart("Busy worker slots (%)", {"utilisation": utilisation}, "%"),
        "depth": chart("Queue depth", {"depth": data["depth"], "pending": data["pending"], "delayed": data["delayed"]}),
        "dlq": chart("Dead-letter depth", {"dlq": data["dlq"]}, colors=("#ef5350",)),
    }


def _window(seconds: float) -> float:
    if not 1 <= seconds <= 3600:
        raise BadRequest("seconds must be between 1 and 3600")
    return seconds


def dead_letters(context: Context, name: str, count: int) -> dict[str, Any]:
    """Newest DLQ rows (payloads included: every API caller is an operator) and the failure patterns
    of the newest PATTERN_SCAN entries."""
    pipeline = context.pipeline(name)
    if not 1 <= count <= 500:
        raise BadRequest("count must be between 1 and 500")
    total, rows = context.run(lambda redis: dlq.newest(redis, pipeline, max(count, PATTERN_SCAN)))
    return {"pipeline": name, "total": total,
            "entries": rows[:count],
            "patterns": dlq.patterns(list(reversed(rows)))}


def dead_letter(context: Context, name: str, wanted: str) -> dict[str, Any]:
    pipeline = context.pipeline(name)
    rows = context.run(lambda redis: dlq.find(redis, pipeline, wanted))
    if not rows:
        raise NotFound(f"no entry {wanted!r} in {pipeline.dlq}")
    return {"pipeline": name, "entries": rows}


def replay(context: Context, name: str, body: bytes) -> dict[str, Any]:
    pipeline = context.pipeline(name)
    selection = _selection(body)
    return context.run(lambda redis: dlq.replay(redis, pipeline, selection))


def purge(context: Context, name: str, body: bytes) -> dict[str, Any]:
    pipeline = context.pipeline(name)
    selection = _selection(body)

    async def work(redis: Redis) -> int:
        chosen = await dlq.select(redis, pipeline, selection)
        return await dlq.purge(redis, pipeline, [row["entry"] for row in chosen])

    return {"deleted": context.run(work)}


def _selection(body: bytes) -> dlq.Selection:
    """A JSON body with exactly one of: ids or entries (lists), error_type, reason, all (true)."""
    try:
        wanted = json.loads(body or b"{}")
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(wanted, dict):
        raise BadRequest("the body must be a JSON object")
    lists = {}
    for key in ("ids", "entries"):
        lists[key] = wanted.get(key, [])
        if not isinstance(lists[key], list) or not all(isinstance(i, str) for i in lists[key]):
            raise BadRequest(f"{key} must be a list of strings")
    try:
        return dlq.Selection(ids=tuple(lists["ids"]), entries=tuple(lists["entries"]),
                             error_type=wanted.get("error_type"), reason=wanted.get("reason"),
                             everything=wanted.get("all") is True)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def bench(context: Context) -> dict[str, Any]:
    """The latest `buraq bench` result, with its charts."""
    try:
        result = json.loads(context.bench_results.read_text())
    except FileNotFoundError:
        raise NotFound(f"no benchmark results at {context.bench_results}: run `buraq bench`") from None
    except ValueError as exc:
        raise BadRequest(f"{context.bench_results} is not JSON: {exc}") from None
    rates = [("enqueue (batch)", float(result.get("enqueue", {}).get("rate", 0.0)))]
    rates += [(f"drain {d.get('handler')} x{d.get('processes')}", float(d.get("rate", 0.0)))
              for d in result.get("drain", [])]
    latency = result.get("latency") or {}
    percentiles = [(f"{key[:-3]} at {latency.get('rate', '?')}/s", float(latency[key]))
                   for key in ("p50_ms", "p95_ms", "p99_ms") if key in latency]
    return {"result": result,
            "charts": {"rates": charts.bar_chart("Rates (tasks/s)", rates, "/s"),
                       "latency": charts.bar_chart("Enqueue-to-start latency (ms)", percentiles, "ms")}}
