"""The operator commands of the ``buraq`` CLI: status, inspect, dlq list/show/replay/purge, schedule list.

Each reads (or, for replay and purge, changes) queue state in Redis and prints a table for people or
JSON for scripts; buraq/cli.py wires them to their options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from redis.asyncio import Redis

from buraq import connection, dlq, schedules, streams
from buraq.config import find_pipeline, load_pipelines
from buraq.embedded import configured_or_embedded
from buraq.errors import EXIT_USER_ERROR, BuraqError

T = TypeVar("T")


def run_query(explicit_url: str | None, query: Callable[[Redis], Awaitable[T]]) -> T:
    """Run one read-only query against the configured (or the embedded) Redis."""

    async def run(url: str) -> T:
        redis = await connection.connect(url, give_up_after=0)
        try:
            return await query(redis)
        finally:
            await redis.aclose()

    with configured_or_embedded(explicit_url) as url:
        return asyncio.run(run(url))


def dlq_list(args: argparse.Namespace) -> int:
    pipeline = find_pipeline(load_pipelines([args.pipelines]), args.pipeline)
    total, rows = run_query(args.redis_url, lambda redis: dlq.newest(redis, pipeline, args.count))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{pipeline.dlq}: {total} dead-lettered task(s); newest {len(rows)}:")
    for row in rows:
        print(f"{row['entry']}  task {row.get('id', '?')}  attempts {row.get('attempts', '?')}  "
              f"{row.get('reason', '?')}  {row.get('error_type', '')}: {row.get('error', '')[:120]}")
    return 0


def selection(args: argparse.Namespace) -> dlq.Selection:
    """The DLQ rows that --id / --error-type / --reason / --all pick."""
    return dlq.Selection(ids=tuple(args.id or ()), error_type=args.error_type, reason=args.reason,
                         everything=args.all)


def dlq_show(args: argparse.Namespace) -> int:
    pipeline = find_pipeline(load_pipelines([args.pipelines]), args.pipeline)
    rows = run_query(args.redis_url, lambda redis: dlq.find(redis, pipeline, args.id))
    if not rows:
        raise BuraqError(f"no entry {args.id!r} in {pipeline.dlq}")
    for row in rows:
        if args.json:
            print(json.dumps(row))
            continue
        for key, value in row.items():
            if key != "traceback":
                print(f"{key:>13}: {value}")
        if row.get("traceback"):
            print("    traceback:\n" + row["traceback"].rstrip())
    return 0


def dlq_replay(args: argparse.Namespace) -> int:
    pipeline = find_pipeline(load_pipelines([args.pipelines]), args.pipeline)
    outcome = run_query(args.redis_url, lambda redis: dlq.replay(redis, pipeline, selection(args)))
    replayed, skipped = outcome["replayed"], outcome["skipped"]
    if args.json:
        print(json.dumps(outcome))
    else:
        print(f"replayed {len(replayed)} task(s) onto {pipeline.stream}" +
              (f"; skipped {len(skipped)} entries with no task to replay: {', '.join(skipped)}" if skipped else ""))
    return 0


def dlq_purge(args: argparse.Namespace) -> int:
    pipeline = find_pipeline(load_pipelines([args.pipelines]), args.pipeline)
    chosen = [r["entry"] for r in run_query(args.redis_url, lambda redis: dlq.select(redis, pipeline, selection(args)))]
    if chosen and not args.yes:
        if not sys.stdin.isatty():
            raise BuraqError(f"purge would delete {len(chosen)} entries from {pipeline.dlq}; add --yes to confirm")
        answer = input(f"Delete {len(chosen)} dead-lettered task(s) from {pipeline.dlq} for good? Type yes: ")
        if answer.strip() != "yes":
            print("nothing deleted")
            return EXIT_USER_ERROR
    deleted = run_query(args.redis_url, lambda redis: dlq.purge(redis, pipeline, chosen))
    print(json.dumps({"deleted": deleted}) if args.json else f"deleted {deleted} entries from {pipeline.dlq}")
    return 0


def schedule_list(args: argparse.Namespace) -> int:
    pipelines = [p for p in load_pipelines([args.pipelines]) if p.schedule]

    async def query(redis: Redis) -> list[dict[str, Any]]:
        rows = []
        for pipeline in pipelines:
            now = await streams.redis_time(redis, pipeline)
            names = [s.name for s in pipeline.schedule]
            marks = await streams.schedule_marks(redis, pipeline, names)
            fired = await streams.schedule_last_fired(redis, pipeline, names)
            for schedule in pipeline.schedule:
                last, last_fired = marks[schedule.name], fired[schedule.name]
                rows.append({"pipeline": pipeline.name, "schedule": schedule.name, "spec": schedule.describe(),
                             "misfire": schedule.misfire, "overlap": schedule.overlap,
                             "last_fire": iso(last_fired) if last_fired else None,
                             "next_fires": [iso(t) for t in schedules.upcoming(schedule, max(now, last or 0),
                                                                                 args.count)]})
        return rows

    rows = run_query(args.redis_url, query)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no schedules")
    for row in rows:
        print(f"{row['pipeline']}  {row['schedule']}  {row['spec']}  misfire={row['misfire']} overlap={row['overlap']}")
        print(f"    last fire: {row['last_fire'] or 'never'}")
        print(f"    next:      {', '.join(row['next_fires'])}")
    return 0


def iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status(args: argparse.Namespace) -> int:
    pipelines = load_pipelines([args.pipelines])

    async def query(redis: Redis) -> list[dict[str, Any]]:
        return [{"pipeline": p.name, **await streams.status(redis, p)} for p in pipelines]

    rows = run_query(args.redis_url, query)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ("PIPELINE", "DEPTH", "QUEUED", "PENDING", "DELAYED", "DLQ", "OLDEST PENDING", "CONSUMERS")
    table = [(r["pipeline"], or_unknown(r["depth"]), or_unknown(r["queued"]), r["pending"], r["delayed"], r["dlq"],
              f"{r['oldest_pending_age']:.1f}s" if r["pending"] else "-", len(r["consumers"])) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *table)]
    print("  ".join(str(cell).ljust(width) for cell, width in zip(headers, widths)))
    for row, line in zip(rows, table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)))
        for consumer in row["consumers"]:  # in flight per worker, and how long since each last read
            print(f"    {consumer['name']}: {consumer['pending']} in flight, idle {consumer['idle_ms'] / 1000:.1f}s")
    return 0


def inspect(args: argparse.Namespace) -> int:
    pipelines = load_pipelines([args.pipelines])
    places = run_query(args.redis_url, lambda redis: dlq.locate(redis, pipelines, args.task_id))
    if args.json:
        print(json.dumps(places, indent=2))
    for place in [] if args.json else places:
        details = "  ".join(f"{key} {value}" for key, value in place.items() if key not in ("pipeline", "where"))
        print(f"{place['pipeline']}  {place['where']}  {details}")
    if not places:
        print(f"task {args.task_id} not found (a task id other than its entry id is found only while delayed "
              "or dead-lettered)", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def or_unknown(value: int | None) -> int | str:
    return "?" if value is None else value
