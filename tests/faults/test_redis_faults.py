"""Redis goes away: at start, and in the middle of a run. Workers wait, reconnect, and lose nothing."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from buraq import Client

from conftest import Project, free_port, wait_for
from history import dlq_ids, events, install
from oracle import assert_valid, check
from redis_server import OwnRedis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "own-redis", free_port())
    yield server
    server.kill()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 1/100 s


def test_redis_killed_and_restarted_mid_run_loses_nothing(project: Project, own_redis: OwnRedis) -> None:
    # Given 3,000 tasks in a Redis with appendfsync always, and a worker on it
    own_redis.start()
    install(project)
    name = project.pipeline("survivor", """
        handler: fault.work
        pool: 20
        lease: 3s
        options: {seconds: 0.01}
    """)
    with Client(own_redis.url, pipelines=str(project.pipelines)) as client:
        enqueued = set(client.enqueue_many(name, [{"n": i} for i in range(3000)]))
    server = project.serve(env=project.env(REDIS_URL=own_redis.url))
    wait_for(lambda: len(events(project, "done")) > 500, message="500 tasks done")

    # When Redis is SIGKILLed mid-run and comes back 2 s later from its append-only file
    own_redis.kill()
    in_flight_bound = 20 + 200  # running tasks plus acks possibly unsent at the kill
    time.sleep(2)
    own_redis.start()

    # Then the worker reconnects and every task ends exactly once
    redis = own_redis.client()
    stream = f"buraq:{{{name}}}:tasks"
    wait_for(lambda: redis.xinfo_groups(stream)[0]["lag"] == 0 and redis.xpending(stream, "buraq")["pending"] == 0,
             timeout=90, message="the queue drained after the restart")
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0, server.output()
    verdict = check(enqueued, [e.task_id for e in events(project, "done")], dlq_ids(redis, name))
    assert_valid(verdict, max_extra_runs=in_flight_bound)
    assert verdict.dead == set()
    assert "read failed" in server.output()  # it did see Redis go away


def test_redis_down_at_start_is_waited_for_without_a_busy_loop(project: Project, own_redis: OwnRedis) -> None:
    # Given no Redis yet at the configured address
    install(project)
    name = project.pipeline("patient", "handler: fault.work\noptions: {seconds: 0}\n")
    server = project.serve(env=project.env(REDIS_URL=own_redis.url))

    # When buraq serve waits 6 s for it
    time.sleep(2)
    cpu_before = _cpu_seconds(server.process.pid)
    time.sleep(4)
    cpu_used = _cpu_seconds(server.process.pid) - cpu_before
    waiting_lines = [line for line in server.output().splitlines() if "not ready" in line]

    # Then it used almost no CPU, logged one line per attempt with a growing pause, and nothing else
    assert cpu_used < 0.2, f"{cpu_used:.2f} s of CPU in 4 s of waiting"
    assert 3 <= len(waiting_lines) <= 8, waiting_lines
    assert all(f"127.0.0.1:{own_redis.port}" in line for line in waiting_lines)

    # And once Redis is up it connects and processes work
    own_redis.start()
    server.wait_ready(timeout=60)
    with Client(own_redis.url, pipelines=str(project.pipelines)) as client:
        task_id = client.enqueue(name, {})
    wait_for(lambda: [e.task_id for e in events(project, "done")] == [task_id], timeout=30, message="task done")
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0
