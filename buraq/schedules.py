"""When a schedule's ticks fall, and which of them to fire after a gap: pure functions, no I/O.

Times are milliseconds since the Unix epoch. ``every`` ticks sit on multiples of the
interval since the epoch, so every process computes the same ticks without talking.
``cron`` ticks come from croniter in the schedule's time zone (DST-aware).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

# A scheduler that was down for long fires at most this many ticks under `misfire: run_all`.
RUN_ALL_LIMIT = 1000


@dataclass(frozen=True)
class Schedule:
    """One entry of a pipeline's ``schedule:`` list, checked and with defaults filled in."""

    name: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    payload: Any = field(default_factory=dict)
    misfire: str = "run_once"
    overlap: str = "allow"

    def describe(self) -> str:
        return f"cron {self.cron!r} ({self.timezone})" if self.cron else f"every {self.every:g}s"


def default_name(raw: dict[str, Any]) -> str:
    """A stable id from what defines the schedule, so editing it starts a fresh history."""
    basis = json.dumps({k: raw.get(k) for k in ("cron", "every", "timezone", "payload")}, sort_keys=True, default=str)
    return hashlib.sha1(basis.encode()).hexdigest()[:12]


def next_tick(schedule: Schedule, after_ms: int) -> int:
    """The first tick strictly after ``after_ms``."""
    if schedule.every is not None:
        step = max(1, round(schedule.every * 1000))
        return (after_ms // step + 1) * step
    return _cron_step(schedule, after_ms, backwards=False)


def upcoming(schedule: Schedule, after_ms: int, count: int) -> list[int]:
    ticks, cursor = [], after_ms
    for _ in range(count):
        cursor = next_tick(schedule, cursor)
        ticks.append(cursor)
    return ticks


def latest_tick_at_or_before(schedule: Schedule, now_ms: int) -> int:
    """The most recent tick not after ``now_ms``."""
    if schedule.every is not None:
        step = max(1, round(schedule.every * 1000))
        return now_ms // step * step
    return _cron_step(schedule, now_ms + 1, backwards=True)


def _cron_step(schedule: Schedule, from_ms: int, backwards: bool) -> int:
    zone = ZoneInfo(schedule.timezone)
    start = datetime.fromtimestamp(from_ms / 1000, tz=timezone.utc).astimezone(zone)
    iterator = croniter(schedule.cron, start)
    moment = iterator.get_prev(datetime) if backwards else iterator.get_next(datetime)
    return int(moment.timestamp() * 1000)


def due_ticks(schedule: Schedule, last_ms: int, now_ms: int, limit: int = RUN_ALL_LIMIT + 1) -> list[int]:
    """Ticks after ``last_ms`` and not after ``now_ms``, oldest first, at most ``limit`` (the newest kept).

    Counted back from ``now_ms``, so a month-long outage of a per-minute cron costs ``limit``
    steps, not forty thousand.
    """
    if schedule.every is not None:  # arithmetic: free whatever the outage
        step = max(1, round(schedule.every * 1000))
        newest = now_ms // step * step
        oldest = max(last_ms // step * step + step, newest - (limit - 1) * step)
        return list(range(oldest, newest + 1, step))
    ticks: list[int] = []
    cursor = now_ms + 1
    while len(ticks) < limit:
        cursor = _cron_step(schedule, cursor, backwards=True)
        if cursor <= last_ms:
            break
        ticks.append(cursor)
    ticks.reverse()
    return ticks


def grace_ms(schedule: Schedule, now_ms: int) -> int:
    """How late a tick may fire and still count as on time: one interval, at most a minute."""
    if schedule.every is not None:
        return min(60_000, max(1, round(schedule.every * 1000)))
    interval = next_tick(schedule, now_ms) - latest_tick_at_or_before(schedule, now_ms)
    return min(60_000, interval)


def plan(schedule: Schedule, last_ms: int, now_ms: int) -> tuple[list[int], int, int]:
    """Which due ticks to fire, the new "last fired" mark, and how many due ticks were missed.

    A tick within its grace of ``now_ms`` is on time and always fires (unless overlap says
    otherwise, which the fire step decides). Older ones were missed while no scheduler ran:
    ``skip`` drops them, ``run_once`` fires one task for all of them (at the newest tick),
    ``run_all`` fires each (at most RUN_ALL_LIMIT).
    """
    ticks = due_ticks(schedule, last_ms, now_ms)
    if not ticks:
        return [], last_ms, 0
    grace = grace_ms(schedule, now_ms)
    on_time = [t for t in ticks if now_ms - t < grace]
    missed = len(ticks) - len(on_time)
    if not missed or schedule.misfire == "run_all":
        return ticks[-RUN_ALL_LIMIT:], ticks[-1], missed
    if schedule.misfire == "run_once":
        return [ticks[-1]], ticks[-1], missed
    return on_time, ticks[-1], missed


def never_fires(schedule: Schedule, after_ms: int, horizon_ms: int = 5 * 366 * 24 * 3600 * 1000) -> bool:
    """True for a cron that has no tick within ``horizon_ms`` (like 0 0 30 2 *: February 30th)."""
    try:
        return next_tick(schedule, after_ms) - after_ms > horizon_ms
    except Exception:  # croniter gives up searching for an impossible date
        return True
