"""Every Redis command buraq sends about a pipeline's data lives here.

The engine, the client and the CLI call these functions and never speak
XREADGROUP, XACK or Lua themselves, so the key layout and the atomic steps can
be read (and changed) in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from buraq.config import Pipeline
from buraq.wire import entry_millis

Entry = tuple[str, dict[bytes, bytes] | None]
# Entries the promoter moves per call; bounded so one script never blocks Redis for long.
PROMOTE_BATCH = 500
# Pending entries the reclaim scan looks at per call, and running ids per heartbeat call.
RECLAIM_SCAN = 200
HEARTBEAT_CHUNK = 1000
# Stream entries one trim call may remove (whole nodes of 100), so one call never blocks Redis for long.
TRIM_BATCH = 50_000
# DLQ entries read, replayed or purged per round trip.
DLQ_BATCH = 500
# How long an `overlap: skip` marker outlives a scheduled task that never ends (a safety net).
OVERLAP_MARKER_TTL_MS = 24 * 3600 * 1000


@cache
def _script_source(name: str) -> str:
    return resources.files("buraq").joinpath(f"lua/{name}.lua").read_text("utf-8")


def _script(redis: aioredis.Redis, name: str) -> Any:
    scripts = redis.__dict__.setdefault("_buraq_scripts", {})
    if name not in scripts:
        scripts[name] = redis.register_script(_script_source(name))
    return scripts[name]


async def ensure_group(redis: aioredis.Redis, pipeline: Pipeline) -> None:
    """Create the consumer group (and stream) if missing, from the start so earlier tasks are read."""
    try:
        await redis.xgroup_create(pipeline.stream, pipeline.group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def add(redis: aioredis.Redis, stream: str, fields: Mapping[bytes, bytes]) -> str:
    entry_id = await redis.xadd(stream, dict(fields))
    return entry_id.decode()


async def add_many(redis: aioredis.Redis, stream: str, entries: Iterable[Mapping[bytes, bytes]],
                   batch: int = 500) -> list[str]:
    """XADD many entries in batches: one round trip and one script call per ``batch`` entries."""
    ids: list[str] = []
    pending = []
    for fields in entries:
        pending.append(fields)
        if len(pending) >= batch:
            ids.extend(await _add_batch(redis, stream, pending))
            pending = []
    if pending:
        ids.extend(await _add_batch(redis, stream, pending))
    return ids


async def _add_batch(redis: aioredis.Redis, stream: str, batch: Sequence[Mapping[bytes, bytes]]) -> list[str]:
    """One script call for the whole batch: a pipeline of XADDs costs the client a pack and a parse each."""
    args: list[Any] = []
    for fields in batch:
        args.append(len(fields))
        for key, value in fields.items():
            args.extend((key, value))
    return [entry_id.decode() for entry_id in await _script(redis, "add_many")(keys=[stream], args=args)]


async def read(redis: aioredis.Redis, pipeline: Pipeline, consumer: str, count: int,
               block_ms: int | None, after: str | None = None) -> list[Entry]:
    """Read up to ``count`` new entries for ``consumer`` or, given ``after``, its own pending ones past that id."""
    reply = await redis.xreadgroup(pipeline.group, consumer, {pipeline.stream: after or ">"},
                                   count=count, block=None if after else block_ms)
    if not reply:
        return []
    # RESP2 gives [[stream, entries]]; RESP3 a {stream: [entries]} mapping.
    entries = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
    return [(entry_id.decode(), fields) for entry_id, fields in entries]


async def wait_for_unread(redis: aioredis.Redis, pipeline: Pipeline, block_ms: int) -> bool:
    """True at once if the group has unread entries (or Redis cannot say); else wait up to ``block_ms``
    for a new entry without reading it for the group (a plain XREAD claims nothing) and say if one came.

    A worker under shared limits asks this before it takes permits or rate slots, so an idle one does
    not hold them through a blocking read that finds nothing.
    """
    last = b"$"
    for group in await redis.xinfo_groups(pipeline.stream):
        if group["name"] in (pipeline.group, pipeline.group.encode()):
            if group.get("lag") is None or group["lag"] > 0:
                return True
            last = group["last-delivered-id"]
    return bool(await redis.xread({pipeline.stream: last}, count=1, block=block_ms))


async def ack(redis: aioredis.Redis, pipeline: Pipeline, entry_ids: Sequence[str]) -> int:
    return await redis.xack(pipeline.stream, pipeline.group, *entry_ids)


async def trim(redis: aioredis.Redis, pipeline: Pipeline, limit: int = TRIM_BATCH) -> int:
    """Remove up to ``limit`` entries every group has acknowledged (never a pending or unread one); return how many."""
    return int(await _script(redis, "trim")(keys=[pipeline.stream], args=[limit]))


async def schedule_retry(redis: aioredis.Redis, pipeline: Pipeline, entry_id: str,
                         fields: Mapping[bytes, bytes], delay: float) -> bool:
    """Atomically park the task in the delayed set (due by Redis time) and acknowledge the entry."""
    member = _netstrings(fields)
    done = await _script(redis, "schedule_retry")(
        keys=[pipeline.stream, pipeline.delayed],
        args=[pipeline.group, entry_id, int(delay * 1000), member])
    return bool(done)


async def dead_letter(redis: aioredis.Redis, pipeline: Pipeline, entry_id: str,
                      fields: Mapping[str, str | bytes]) -> bool:
    """Atomically write the DLQ entry and acknowledge the original; never one without the other."""
    args: list[Any] = [pipeline.group, entry_id]
    for key, value in fields.items():
        args.extend((key, value))
    done = await _script(redis, "dead_letter")(keys=[pipeline.stream, pipeline.dlq], args=args)
    return bool(done)


async def promote_due(redis: aioredis.Redis, pipeline: Pipeline) -> tuple[int, float | None, int]:
    """Move due delayed tasks into the stream; return (moved, seconds until the next or None, malformed)."""
    moved, wait_ms, malformed = await _script(redis, "promote_due")(
        keys=[pipeline.stream, pipeline.delayed, pipeline.dlq], args=[PROMOTE_BATCH])
    return int(moved), (None if int(wait_ms) < 0 else int(wait_ms) / 1000.0), int(malformed)


async def read_range(redis: aioredis.Redis, stream: str, count: int, newest_first: bool = False,
                     start: str | None = None) -> list[Entry]:
    """Entries of any stream (used for the DLQ), oldest or newest first."""
    if newest_first:
        rows = await redis.xrevrange(stream, max=start or "+", min="-", count=count)
    else:
        rows = await redis.xrange(stream, min=start or "-", max="+", count=count)
    return [(entry_id.decode(), fields) for entry_id, fields in rows]


async def pending_count(redis: aioredis.Redis, pipeline: Pipeline) -> int:
    """Entries delivered to some consumer of the group and not yet acknowledged."""
    try:
        return int((await redis.xpending(pipeline.stream, pipeline.group))["pending"])
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            return 0
        raise


async def length(redis: aioredis.Redis, stream: str) -> int:
    return await redis.xlen(stream)


async def heartbeat(redis: aioredis.Redis, pipeline: Pipeline, consumer: str, running: Sequence[str]) -> list[str]:
    """Mark ``consumer`` alive for one lease and refresh its running entries; return ids it lost."""
    lost: list[str] = []
    ids = list(running)
    lease_ms = int(pipeline.lease * 1000)
    for start in range(0, max(len(ids), 1), HEARTBEAT_CHUNK):
        reply = await _script(redis, "heartbeat")(
            keys=[pipeline.stream, pipeline.consumers],
            args=[pipeline.group, consumer, lease_ms, *ids[start:start + HEARTBEAT_CHUNK]])
        lost.extend(entry_id.decode() for entry_id in reply)
    return lost


async def reclaim(redis: aioredis.Redis, pipeline: Pipeline, consumer: str, cursor: str,
                  limit: int) -> tuple[str, list[tuple[str, dict[bytes, bytes] | None, int]]]:
    """Take over up to ``limit`` entries of dead (or silent past the lease) consumers.

    Returns the next cursor ('-' after a full pass) and (entry id, fields, deliveries) for each
    entry taken; fields are None for an entry trimmed from the stream while it was pending.
    """
    next_cursor, taken, deliveries, claimed = await _script(redis, "reclaim")(
        keys=[pipeline.stream, pipeline.consumers],
        args=[pipeline.group, consumer, int(pipeline.lease * 1000), cursor, RECLAIM_SCAN, limit])
    existing = {entry_id.decode(): _pairs(fields) for entry_id, fields in claimed}
    entries = [(entry_id.decode(), existing.get(entry_id.decode()), int(count))
               for entry_id, count in zip(taken, deliveries)]
    return next_cursor.decode(), entries


async def leave(redis: aioredis.Redis, pipeline: Pipeline, consumer: str) -> None:
    """Stop counting ``consumer`` as alive (its leftovers become claimable at once)."""
    await _script(redis, "leave")(keys=[pipeline.stream, pipeline.consumers], args=[pipeline.group, consumer])


async def deliveries(redis: aioredis.Redis, pipeline: Pipeline, entry_ids: Sequence[str]) -> dict[str, int]:
    """How many times each pending entry has been delivered (asked one id at a time, so exact)."""
    if not entry_ids:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.xpending_range(pipeline.stream, pipeline.group, min=entry_id, max=entry_id, count=1)
        replies = await pipe.execute()
    return {row["message_id"].decode(): int(row["times_delivered"]) for rows in replies for row in rows}


def _pairs(flat: list[bytes] | None) -> dict[bytes, bytes] | None:
    if flat is None:
        return None
    return dict(zip(flat[::2], flat[1::2]))


def _netstrings(fields: Mapping[bytes, bytes]) -> bytes:
    """Fields as netstrings ("<length>:<bytes>"): the delayed set's member format, any bytes allowed."""
    return b"".join(b"%d:%s" % (len(part), part) for pair in fields.items() for part in pair)


async def add_delayed(redis: aioredis.Redis, pipeline: Pipeline, fields: Mapping[bytes, bytes],
                      delay: float | None = None, at: float | None = None) -> float:
    """Park a task until ``delay`` seconds from now by Redis's clock, or until epoch time ``at``; return its due time."""
    mode, millis = ("delay", round((delay or 0) * 1000)) if at is None else ("at", round(at * 1000))
    due = await _script(redis, "delay")(keys=[pipeline.delayed], args=[mode, millis, _netstrings(fields)])
    return int(due) / 1000.0


async def redis_time(redis: aioredis.Redis, pipeline: Pipeline) -> int:
    """Redis's clock in ms: the one clock every process agrees on.

    It is read on the node holding ``pipeline``'s keys: on a Redis Cluster each master has its
    own clock, and the scripts that judge due times against this one run on that node.
    """
    seconds, micros = await _script(redis, "now")(keys=[pipeline.stream])
    return int(seconds) * 1000 + int(micros) // 1000


async def schedule_marks(redis: aioredis.Redis, pipeline: Pipeline, names: Sequence[str]) -> dict[str, int | None]:
    """The last tick (ms) each named schedule of ``pipeline`` has handled; None for one never seen."""
    values = await redis.hmget(pipeline.schedules, list(names))
    return {name: (int(value) if value else None) for name, value in zip(names, values)}


async def schedule_last_fired(redis: aioredis.Redis, pipeline: Pipeline, names: Sequence[str]) -> dict[str, int | None]:
    """The last tick (ms) each named schedule actually enqueued a task for; None if it never did."""
    values = await redis.hmget(pipeline.schedules, [f"{name}:fired" for name in names])
    return {name: (int(value) if value else None) for name, value in zip(names, values)}


async def fire_ticks(redis: aioredis.Redis, pipeline: Pipeline, schedule: str, expected_last: int | None,
                     new_last: int, ticks: Sequence[int], overlap: str, payload: bytes) -> tuple[str, int, int]:
    """Enqueue ``ticks`` and move the schedule's mark from ``expected_last`` to ``new_last``, atomically.

    Returns (status, fired, skipped); status 'stale' means another scheduler moved the mark first.
    """
    status, fired, skipped = await _script(redis, "fire_ticks")(
        keys=[pipeline.stream, pipeline.schedules, pipeline.overlap_marker(schedule)],
        args=[schedule, "" if expected_last is None else str(expected_last), str(new_last), overlap,
              OVERLAP_MARKER_TTL_MS, payload, *[str(t) for t in ticks]])
    return status.decode(), int(fired), int(skipped)


async def schedule_finished(redis: aioredis.Redis, pipeline: Pipeline, schedule: str, task_id: str) -> None:
    """A scheduled task ended (done or dead-lettered): its schedule may fire again under `overlap: skip`.

    The marker is cleared only if it still names this task, so a late duplicate of an old tick
    cannot clear the marker of a newer one.
    """
    await _script(redis, "clear_marker")(keys=[pipeline.overlap_marker(schedule)], args=[task_id])


async def queue_state(redis: aioredis.Redis, pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline's queue as Redis sees it, in one round trip; the source of `buraq status` and the gauges.

    ``queued`` is the group's lag (unread entries), never XLEN of a live stream, which counts done
    work too; before any group exists it is the stream's length. Redis cannot always compute the
    lag (after an XDEL of an unread entry): then it is None. ``oldest_pending_age`` is in seconds
    since the oldest pending entry was enqueued, by Redis's clock.
    """
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xinfo_groups(pipeline.stream)
        pipe.xpending(pipeline.stream, pipeline.group)
        pipe.xlen(pipeline.stream)
        pipe.xlen(pipeline.dlq)
        pipe.zcard(pipeline.delayed)
        pipe.eval(_script_source("now"), 1, pipeline.stream)  # TIME has no key: a cluster cannot route it
        groups, pending, length, dlq, delayed, (seconds, micros) = await pipe.execute(raise_on_error=False)
    group = None if isinstance(groups, Exception) else next(
        (g for g in groups if g["name"] in (pipeline.group, pipeline.group.encode())), None)
    if group is None or isinstance(pending, Exception):
        return {"group": False, "queued": 0 if isinstance(length, Exception) else int(length), "pending": 0,
                "oldest_pending_age": 0.0, "delayed": int(delayed), "dlq": int(dlq)}
    oldest = pending.get("min")
    age = max(0.0, int(seconds) + int(micros) / 1e6 - entry_millis(oldest.decode()) / 1000) if oldest else 0.0
    lag = group.get("lag")
    return {"group": True, "queued": None if lag is None else int(lag), "pending": int(pending["pending"]),
            "oldest_pending_age": age, "delayed": int(delayed), "dlq": int(dlq)}


async def status(redis: aioredis.Redis, pipeline: Pipeline) -> dict[str, Any]:
    """What `buraq status` shows for one pipeline: its queue state and its consumers."""
    state = await queue_state(redis, pipeline)
    consumers = []
    if state["group"]:
        for consumer in await redis.xinfo_consumers(pipeline.stream, pipeline.group):
            consumers.append({"name": consumer["name"].decode(), "pending": int(consumer["pending"]),
                              "idle_ms": int(consumer["idle"])})
    depth = None if state["queued"] is None else state["queued"] + state["pending"]
    return {"depth": depth, "queued": state["queued"], "pending": state["pending"], "delayed": state["delayed"],
            "dlq": state["dlq"], "oldest_pending_age": round(state["oldest_pending_age"], 3), "consumers": consumers}


async def replay_dead(redis: aioredis.Redis, pipeline: Pipeline, dead_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Move DLQ entries back onto the stream (same task id, attempt 1); return (replayed, skipped) DLQ ids."""
    replayed: list[str] = []
    skipped: list[str] = []
    for start in range(0, len(dead_ids), DLQ_BATCH):
        moved, left = await _script(redis, "replay")(keys=[pipeline.stream, pipeline.dlq],
                                                     args=list(dead_ids[start:start + DLQ_BATCH]))
        replayed.extend(entry_id.decode() for entry_id in moved)
        skipped.extend(entry_id.decode() for entry_id in left)
    return replayed, skipped


async def purge_dead(redis: aioredis.Redis, pipeline: Pipeline, dead_ids: Sequence[str]) -> int:
    """Delete DLQ entries for good."""
    deleted = 0
    for start in range(0, len(dead_ids), DLQ_BATCH):
        deleted += await redis.xdel(pipeline.dlq, *dead_ids[start:start + DLQ_BATCH])
    return deleted


async def scan_dead(redis: aioredis.Redis, pipeline: Pipeline) -> list[Entry]:
    """Every DLQ entry, oldest first, read in pages."""
    entries: list[Entry] = []
    start = "-"
    while True:
        page = await redis.xrange(pipeline.dlq, min=start, max="+", count=DLQ_BATCH)
        entries.extend((entry_id.decode(), fields) for entry_id, fields in page)
        if len(page) < DLQ_BATCH:
            return entries
        start = "(" + page[-1][0].decode()


_ENTRY_ID = re.compile(r"\d+-\d+")


async def locate(redis: aioredis.Redis, pipeline: Pipeline, task_id: str) -> list[dict[str, Any]]:
    """Where a task is in this pipeline, found cheaply: its stream entry (when the task id is the entry id,
    as for tasks enqueued without a delay), its pending state, and the delayed set. The DLQ is searched by
    the caller (buraq/dlq.py)."""
    found: list[dict[str, Any]] = []
    if _ENTRY_ID.fullmatch(task_id):
        entries = await redis.xrange(pipeline.stream, min=task_id, max=task_id)
        if entries:
            found.append(await _entry_state(redis, pipeline, task_id))
    needle = b"2:id%d:%s" % (len(task_id.encode()), _glob_escape(task_id.encode()))
    async for member, due in redis.zscan_iter(pipeline.delayed, match=b"*" + needle + b"*", count=1000):
        found.append({"where": "delayed", "due_at": due / 1000.0})
    return found


async def _entry_state(redis: aioredis.Redis, pipeline: Pipeline, entry_id: str) -> dict[str, Any]:
    """queued, pending (with its consumer, idle time and deliveries) or acknowledged (it ended: done,
    dead-lettered, or parked in the delayed set for a retry)."""
    try:
        pending = await redis.xpending_range(pipeline.stream, pipeline.group, min=entry_id, max=entry_id, count=1)
        groups = await redis.xinfo_groups(pipeline.stream)
    except ResponseError:  # no group yet: nobody has read it
        return {"where": "stream", "state": "queued"}
    if pending:
        row = pending[0]
        return {"where": "stream", "state": "pending", "consumer": row["consumer"].decode(),
                "idle_ms": int(row["time_since_delivered"]), "deliveries": int(row["times_delivered"])}
    group = next((g for g in groups if g["name"] in (pipeline.group, pipeline.group.encode())), None)
    last = group["last-delivered-id"].decode() if group else "0-0"
    delivered = tuple(map(int, entry_id.split("-"))) <= tuple(map(int, last.split("-")))
    return {"where": "stream", "state": "acknowledged" if delivered else "queued"}


def _glob_escape(text: bytes) -> bytes:
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", text)


async def enqueue_once(redis: aioredis.Redis, stream: str, dedup_key: str, window: float,
                       fields: Mapping[bytes, bytes]) -> tuple[bool, str]:
    """XADD unless ``dedup_key`` was set within ``window`` seconds; return (added, the task's entry id)."""
    added, entry_id = await _script(redis, "enqueue_once")(keys=[stream, dedup_key], args=_once_args(window, fields))
    return bool(added), entry_id.decode()


async def enqueue_once_many(redis: aioredis.Redis, stream: str, window: float,
                            entries: Sequence[tuple[str, Mapping[bytes, bytes]]]) -> list[str]:
    """``enqueue_once`` for each (dedup key, fields), pipelined; the entry ids in order."""
    script = _script(redis, "enqueue_once")
    ids: list[str] = []
    for start in range(0, len(entries), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for dedup_key, fields in entries[start:start + 500]:
                await script(keys=[stream, dedup_key], args=_once_args(window, fields), client=pipe)
            ids.extend(entry_id.decode() for _, entry_id in await pipe.execute())
    return ids


def _once_args(window: float, fields: Mapping[bytes, bytes]) -> list[Any]:
    args: list[Any] = [max(1, round(window * 1000))]
    for key, value in fields.items():
        args.extend((key, value))
    return args


async def rate_take(redis: aioredis.Redis, pipeline: Pipeline, wanted: int,
                    look_ahead: float) -> tuple[int, float]:
    """Take up to ``wanted`` start slots, one ``per / tasks`` apart, the first at most ``look_ahead`` s away.

    Returns (slots, seconds until the first slot); with 0 slots, the seconds to wait before asking again.
    """
    assert pipeline.rate_limit is not None
    tasks, per = pipeline.rate_limit
    slots, micros = await _script(redis, "rate_take")(
        keys=[pipeline.rate_key], args=[max(1, round(per * 1e6 / tasks)), wanted, round(look_ahead * 1e6)])
    return int(slots), int(micros) / 1e6


async def permits_take(redis: aioredis.Redis, pipeline: Pipeline, names: Sequence[str]) -> list[str]:
    """Take as many of the named concurrency permits as are free; return those granted."""
    granted = await _script(redis, "permits_take")(
        keys=[pipeline.permits], args=[pipeline.concurrency, int(pipeline.lease * 1000), *names])
    return [name.decode() for name in granted]


async def permits_refresh(redis: aioredis.Redis, pipeline: Pipeline, names: Sequence[str]) -> list[str]:
    """Extend held permits by a lease; return those that had expired already."""
    lost = await _script(redis, "permits_refresh")(keys=[pipeline.permits],
                                                   args=[int(pipeline.lease * 1000), *names])
    return [name.decode() for name in lost]


async def permits_release(redis: aioredis.Redis, pipeline: Pipeline, names: Sequence[str]) -> None:
    if names:
        await redis.zrem(pipeline.permits, *names)
