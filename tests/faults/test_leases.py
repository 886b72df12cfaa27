"""Live workers keep their tasks: work that runs longer than the lease is never taken over."""

from __future__ import annotations

import signal

from conftest import Project, wait_for
from history import events, install, pending


def test_tasks_running_past_the_lease_are_not_run_twice(project: Project, redis) -> None:
    # Given 20 tasks of 4 s, a 1 s lease, and two workers that both reclaim eagerly
    install(project)
    name = project.pipeline("long", """
        handler: fault.work
        pool: 10
        lease: 1s
        options: {seconds: 4}
    """)
    ids = project.buraq("enqueue", name, input="{}\n" * 20).stdout.split()
    first, second = project.serve(), project.serve()

    # When they run, each task spanning four leases
    wait_for(lambda: len(events(project, "done")) == 20, timeout=60, message="20 tasks done")

    # Then heartbeats kept every task with its worker: each ran once, on attempt 1
    starts = events(project, "start")
    assert sorted(e.task_id for e in starts) == sorted(ids)
    assert {e.attempt for e in starts} == {1}
    assert len({e.pid for e in starts}) == 2
    for server in (first, second):
        server.signal(signal.SIGTERM)
    for server in (first, second):
        assert server.wait(30) == 0
    assert pending(redis, name) == 0
    assert redis.hlen(f"buraq:{{{name}}}:consumers") == 0, "workers leave the consumers hash on a clean stop"
    assert redis.xinfo_consumers(f"buraq:{{{name}}}:tasks", "buraq") == [], "and the group"
