"""Dead-letter operations shared by the CLI (`buraq dlq ...`) and the dashboard's API.

One place decides what a DLQ row looks like, which rows a selection picks and how failures
group into patterns, so the terminal and the browser never disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from buraq import streams
from buraq.config import Pipeline

Row = dict[str, str]


@dataclass(frozen=True)
class Selection:
    """Which DLQ rows an operator picked: by ids (a DLQ entry id or a task id), by DLQ entry ids only
    (what a screen showing one row means: a task id may equal another row's entry id), by error type,
    by reason, or all of them."""

    ids: Sequence[str] = ()
    error_type: str | None = None
    reason: str | None = None
    everything: bool = False
    entries: Sequence[str] = ()

    def __post_init__(self) -> None:
        chosen = sum((bool(self.ids), bool(self.entries), self.error_type is not None, self.reason is not None,
                      self.everything))
        if chosen != 1:
            raise ValueError("pick exactly one of: ids, entries, error_type, reason, all")

    def matches(self, row: Row) -> bool:
        if self.everything:
            return True
        if self.entries:
            return row["entry"] in self.entries
        if self.ids:
            return row["entry"] in self.ids or row.get("id") in self.ids
        if self.error_type is not None:
            return row.get("error_type") == self.error_type
        return row.get("reason") == self.reason


def rows(entries: Sequence[streams.Entry]) -> list[Row]:
    """DLQ entries as flat text rows (the entry id under ``entry``); bytes that are not UTF-8 are replaced."""
    return [{"entry": entry_id, **{k.decode(): v.decode("utf-8", "replace") for k, v in (fields or {}).items()}}
            for entry_id, fields in entries]


async def newest(redis: Redis, pipeline: Pipeline, count: int) -> tuple[int, list[Row]]:
    """The DLQ's length and its newest ``count`` rows, newest first."""
    total = await streams.length(redis, pipeline.dlq)
    return total, rows(await streams.read_range(redis, pipeline.dlq, count, newest_first=True))


async def find(redis: Redis, pipeline: Pipeline, wanted: str) -> list[Row]:
    """Rows whose DLQ entry id or task id is ``wanted`` (a task replayed and failed again has several)."""
    return [r for r in rows(await streams.scan_dead(redis, pipeline)) if wanted in (r["entry"], r.get("id"))]


async def select(redis: Redis, pipeline: Pipeline, selection: Selection) -> list[Row]:
    return [r for r in rows(await streams.scan_dead(redis, pipeline)) if selection.matches(r)]


async def replay(redis: Redis, pipeline: Pipeline, selection: Selection) -> dict[str, list[str]]:
    """Put the selected tasks back on their stream; task ids of the replayed, DLQ ids of the skipped."""
    chosen = await select(redis, pipeline, selection)
    replayed, skipped = await streams.replay_dead(redis, pipeline, [r["entry"] for r in chosen])
    task_ids = {r["entry"]: r.get("id", "?") for r in chosen}
    return {"replayed": [task_ids[e] for e in replayed], "skipped": skipped}


async def purge(redis: Redis, pipeline: Pipeline, entry_ids: Sequence[str]) -> int:
    return await streams.purge_dead(redis, pipeline, entry_ids) if entry_ids else 0


def patterns(dead: Sequence[Row], top: int = 5) -> list[dict[str, Any]]:
    """Failure patterns: the most common (reason, error type) pairs with counts and the newest sample."""
    counts: Counter[tuple[str, str]] = Counter()
    samples: dict[tuple[str, str], Row] = {}
    for row in dead:
        key = (row.get("reason", "?"), row.get("error_type", ""))
        counts[key] += 1
        samples[key] = row  # rows come oldest first: the last one seen is the newest
    return [{"reason": reason, "error_type": error_type, "count": count,
             "sample": {"entry": samples[(reason, error_type)]["entry"],
                        "id": samples[(reason, error_type)].get("id", "?"),
                        "error": samples[(reason, error_type)].get("error", "")[:300]}}
            for (reason, error_type), count in counts.most_common(top)]


async def locate(redis: Redis, pipelines: Sequence[Pipeline], task_id: str) -> list[dict[str, Any]]:
    """Every place ``task_id`` is found, in every pipeline: stream state, delayed set, dead-letter stream."""
    found = []
    for pipeline in pipelines:
        places = await streams.locate(redis, pipeline, task_id)
        places += [{"where": "dlq", "entry": row["entry"], "reason": row.get("reason", "?"),
                    "error_type": row.get("error_type", ""), "error": row.get("error", "")}
                   for row in await find(redis, pipeline, task_id)]
        found += [{"pipeline": pipeline.name, **place} for place in places]
    return found
