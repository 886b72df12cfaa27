"""Delayed tasks, retries that wait in Redis, and schedules that fire once however many replicas run."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import statistics
import time
from collections import Counter

import pytest

from buraq import AsyncClient

from conftest import Project, wait_for

# Handlers that record, per task: id, when it was due and when it started, both by Redis's clock.
TIMING_PLUGIN = '''
import asyncio, os
import redis.asyncio as aioredis
import buraq

_redis = None

async def now_ms():
    global _redis
    if _redis is None:
        _redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    seconds, micros = await _redis.time()
    return seconds * 1000 + micros // 1000

async def timed(task):
    started = await now_ms()
    due = int(task.due_at * 1000) if task.due_at is not None else -1
    with open(os.path.join(os.environ["BURAQ_RECORDS"], "timed"), "a") as f:
        f.write(f"{task.id} {due} {started} {os.getpid()}\\n")
    await asyncio.sleep(float(task.options.get("seconds", 0)))
    if task.options.get("seconds"):
        with open(os.path.join(os.environ["BURAQ_RECORDS"], "ended"), "a") as f:
            f.write(f"{task.id} {await now_ms()}\\n")

@buraq.hookimpl
def register_handlers(register):
    register("test.timed", timed)
'''


@pytest.fixture
def timing(project: Project) -> Project:
    project.plugin("timing.py", TIMING_PLUGIN)
    return project


def _timed(project: Project) -> list[tuple[str, int, int, int]]:
    rows = []
    for line in project.recorded("timed"):
        task_id, due, started, pid = line.split()
        rows.append((task_id, int(due), int(started), int(pid)))
    return rows


def test_1000_delayed_tasks_never_start_early_and_start_soon_after(timing: Project) -> None:
    # Given a running worker
    name = timing.pipeline("later", "handler: test.timed\npool: 200\n")
    server = timing.serve()
    server.wait_ready()

    # When 1,000 tasks are enqueued with random delays between 0 and 3 s
    async def enqueue() -> list[str]:
        rand = random.Random(7)
        async with AsyncClient(timing.redis_url, pipelines=str(timing.pipelines)) as client:
            return [await client.enqueue(name, {"n": i}, delay=rand.uniform(0, 3)) for i in range(1000)]

    ids = asyncio.run(enqueue())
    wait_for(lambda: len(timing.recorded("timed")) >= 1000, timeout=60, message="1,000 delayed tasks started")

    # Then none started before it was due, by Redis's clock, and all soon after
    rows = _timed(timing)
    assert sorted(r[0] for r in rows) == sorted(ids)
    lateness = sorted(started - due for _, due, started, _ in rows)
    assert lateness[0] >= 0, f"a task started {-lateness[0]} ms early"
    p50, p99 = statistics.median(lateness), lateness[int(0.99 * len(lateness)) - 1]
    print(f"\ndelayed-task lateness over 1,000 tasks: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {lateness[-1]} ms")
    assert p99 <= 500, f"p99 lateness {p99} ms"
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_every_tick_fires_exactly_once_across_three_replicas_even_when_one_dies(timing: Project, redis) -> None:
    # Given a 1 s schedule and three buraq serve processes
    name = timing.pipeline("ticking", """
        handler: test.timed
        schedule:
          - name: heartbeat
            every: 1s
            payload: {beat: true}
    """)
    servers = [timing.serve() for _ in range(3)]
    for server in servers:
        server.wait_ready()

    # When they run for 20 s, and one is SIGKILLed halfway
    time.sleep(10)
    servers[0].process.send_signal(signal.SIGKILL)
    servers[0].wait()
    time.sleep(10)
    for server in servers[1:]:
        server.signal(signal.SIGTERM)
    for server in servers[1:]:
        assert server.wait() == 0, server.output()

    # Then there is exactly one task per tick: no doubles, no gaps
    ticks = [int(task_id.rsplit("@", 1)[1]) for task_id, _, _, _ in _timed(timing)]
    counts = Counter(ticks)
    assert max(counts.values()) == 1, f"doubled ticks: {[t for t, n in counts.items() if n > 1]}"
    ordered = sorted(counts)
    assert ordered == list(range(ordered[0], ordered[-1] + 1000, 1000)), "a tick is missing"
    assert len(ordered) >= 18
    # ...and each fired on time: never before its tick, by Redis's clock
    assert all(started >= due for _, due, started, _ in _timed(timing))
    firing_processes = {pid for _, _, _, pid in _timed(timing)}
    print(f"\nthree replicas, one killed at 10 s: {len(ordered)} ticks, {len(ordered)} tasks, "
          f"0 doubles, 0 gaps, run by {len(firing_processes)} processes")


def test_a_retry_30_seconds_out_survives_a_restart_of_every_worker(project: Project, redis) -> None:
    from conftest import RECORDER_PLUGIN

    project.plugin("recorder.py", RECORDER_PLUGIN)
    name = project.pipeline("patient", """
        handler: test.fail_twice
        retry:
          attempts: 3
          backoff: {initial: 30s, multiplier: 1, jitter: 0}
    """)
    task_id = project.buraq("enqueue", name, "{}").stdout.strip()
    first = project.serve()
    wait_for(lambda: redis.zcard(f"buraq:{{{name}}}:delayed") == 1, message="retry parked for 30 s")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    time.sleep(2)  # nothing runs at all for a while
    second = project.serve()
    wait_for(lambda: len(project.recorded("run")) == 2, timeout=60, message="second attempt")
    first_run, second_run = (float(line.split()[2]) for line in project.recorded("run"))
    assert second_run - first_run >= 30
    # The third attempt is parked again; it too runs once, then succeeds
    wait_for(lambda: project.recorded("ok") == [f"{task_id} 3"], timeout=60, message="third attempt succeeded")
    assert [line.split()[1] for line in project.recorded("run")] == ["1", "2", "3"]
    second.signal(signal.SIGTERM)
    assert second.wait() == 0


@pytest.mark.parametrize("policy", ["skip", "run_once", "run_all"])
def test_misfire_policy_after_everything_was_down_for_three_ticks(timing: Project, policy: str) -> None:
    # Given a 1 s schedule that fired a few times
    timing.pipeline("missed", f"""
        handler: test.timed
        schedule:
          - name: beat
            every: 1s
            misfire: {policy}
    """)
    first = timing.serve()
    wait_for(lambda: len(timing.recorded("timed")) >= 2, message="two ticks before the outage")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    fired_before = {int(r[0].rsplit("@", 1)[1]) for r in _timed(timing)}

    # When no scheduler runs across three or more ticks, then one starts again
    time.sleep(3.6)
    second = timing.serve()
    second.wait_ready()
    time.sleep(0.5)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0

    # Then the ticks that came due while it was down were handled as the policy says
    back_at = _logged_ms(second.output(), "serving ")
    ticks = {int(r[0].rsplit("@", 1)[1]): r for r in _timed(timing)}
    missed = [t for t in range(max(fired_before) + 1000, back_at + 1, 1000)]
    fired = sorted(t for t in ticks if t in missed)
    assert len(missed) >= 3, missed
    if policy == "run_all":
        assert fired == missed  # every missed tick, each late
    elif policy == "run_once":
        # One task stands for all of them: the newest (or, if a tick came due in the instant between
        # the restart's log line and its first pass, that tick, which is not counted in `missed` here).
        assert fired in ([missed[-1]], []), fired
        assert len(missed) - len(fired) >= 2
    else:
        assert fired in ([], [missed[-1]])  # only the newest, and only if it is still on time
        assert all(ticks[t][2] - t < 1000 for t in fired)
    print(f"\nmisfire {policy}: {len(missed)} ticks came due while down; {len(fired)} fired for them on restart")


def _logged_ms(output: str, marker: str) -> int:
    """The time of the first log line containing ``marker``, in ms since the epoch."""
    from datetime import datetime

    line = next(line for line in output.splitlines() if marker in line)
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return int(stamp.astimezone().timestamp() * 1000)


def test_overlap_skip_does_not_fire_while_the_previous_run_is_going(timing: Project) -> None:
    name = timing.pipeline("exclusive", """
        handler: test.timed
        options: {seconds: 2.5}
        schedule:
          - name: slow
            every: 1s
            overlap: skip
    """)
    server = timing.serve()
    wait_for(lambda: len(timing.recorded("ended")) >= 2, timeout=30, message="two runs ended")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    starts = {task_id: started for task_id, _, started, _ in _timed(timing)}
    ends = {line.split()[0]: int(line.split()[1]) for line in timing.recorded("ended")}
    runs = sorted((starts[t], ends.get(t, 10**15)) for t in starts)
    for (_, end), (next_start, _) in zip(runs, runs[1:]):
        assert next_start >= end, f"a run started at {next_start} before the previous ended at {end}"


def test_invalid_cron_and_time_zone_are_reported_with_file_and_line(project: Project) -> None:
    (project.pipelines / "bad.yaml").write_text(
        "name: bad\nhandler: builtin.noop\nschedule:\n"
        "  - cron: \"61 * * * *\"\n"
        "  - cron: \"0 9 * * *\"\n    timezone: Mars/Olympus\n"
        "  - every: 10ms\n")
    (project.pipelines / "both.yaml").write_text(
        "name: both\nhandler: builtin.noop\nschedule:\n"
        "  - every: 1s\n    cron: \"* * * * *\"\n")
    result = project.buraq("validate", "pipelines", "--plugins-dir", "plugins")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "pipelines/bad.yaml:4: schedule[0].cron: '61 * * * *' is not a valid cron expression" in lines
    assert any(line.startswith("pipelines/bad.yaml:6: schedule[1].timezone: unknown time zone 'Mars/Olympus'")
               for line in lines)
    assert any(line.startswith("pipelines/bad.yaml:7: schedule[2].every") for line in lines)
    assert any(line.startswith("pipelines/both.yaml:4:") and "exactly one of cron or every" in line for line in lines)
    assert len(lines) == 4, result.stderr


def test_schedule_list_and_status_show_fires_and_delayed_counts(timing: Project) -> None:
    name = timing.pipeline("shown", """
        handler: test.timed
        schedule:
          - name: nightly
            cron: "0 3 * * *"
            timezone: Europe/Berlin
    """)
    timing.buraq("enqueue", name, "{}", "--delay", "1h")
    timing.buraq("enqueue", name, "{}", "--at", "2099-01-01T00:00:00Z")
    status = json.loads(timing.buraq("status", "--json").stdout)
    assert status == [{"pipeline": name, "depth": 0, "queued": 0, "pending": 0, "delayed": 2, "dlq": 0,
                       "oldest_pending_age": 0.0, "consumers": []}]
    listed = json.loads(timing.buraq("schedule", "list", "--json").stdout)
    [row] = listed
    assert row["schedule"] == "nightly" and row["last_fire"] is None
    assert len(row["next_fires"]) == 3
    assert all(t.endswith(":00:00.000Z") and t[11:13] in ("01", "02") for t in row["next_fires"])  # 03:00 Berlin


def test_schedules_that_could_never_work_are_refused_by_validate(project: Project) -> None:
    (project.pipelines / "never.yaml").write_text(
        "name: never\nhandler: builtin.noop\nmax_payload: 20\n"
        "payload_schema: {type: object, required: [report]}\n"
        "schedule:\n"
        "  - cron: \"0 0 30 2 *\"\n"
        "    payload: {report: x}\n"
        "  - every: 1m\n"
        "    payload: {other: 1}\n"
        "  - every: 1h\n"
        "    payload: {report: \"far too long for twenty bytes\"}\n")
    result = project.buraq("validate", "pipelines", "--plugins-dir", "plugins")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "pipelines/never.yaml:6: schedule[0].cron: '0 0 30 2 *' never fires (no such date within five years)" in lines
    assert any(line.startswith("pipelines/never.yaml:9: schedule[1]: payload does not match payload_schema")
               for line in lines)
    assert any(line.startswith("pipelines/never.yaml:11: schedule[2].payload is 42 bytes") for line in lines)
    assert len(lines) == 3, result.stderr
