"""Handlers that hang past their timeout or kill their own process, under executor: process."""

from __future__ import annotations

import os
import signal
import time

from conftest import Project, wait_for
from history import dlq_ids, events, install, pending


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_hung_sync_handler_is_killed_at_its_timeout_and_its_slot_freed(project: Project, redis) -> None:
    # Given a plain def handler that hangs, run in child processes, with a 1 s timeout and 2 attempts
    install(project)
    name = project.pipeline("stuck", """
        handler: fault.hang
        executor: process
        pool: 1
        timeout: 1s
        retry: {attempts: 2, backoff: {initial: 100ms, jitter: 0}}
    """)
    hung = project.buraq("enqueue", name, '{"quick": false}').stdout.strip()
    quick = project.buraq("enqueue", name, '{"quick": true}').stdout.strip()
    started = time.monotonic()
    server = project.serve()
    server.wait_ready()

    # When it runs: the hung task times out twice, each time on a fresh child process
    wait_for(lambda: hung in dlq_ids(redis, name), timeout=60, message="hung task dead-lettered")
    elapsed = time.monotonic() - started
    wait_for(lambda: quick in [e.task_id for e in events(project, "done")], timeout=30, message="quick task done")

    # Then it reached the DLQ as a timeout within the two 1 s timeouts plus start-up, and the
    # single slot was free again for the quick task (which a thread-held slot would have blocked)
    hung_runs = [e for e in events(project, "start") if e.task_id == hung]
    assert [e.attempt for e in hung_runs] == [1, 2]
    assert len({e.pid for e in hung_runs}) == 2, "each timed-out child is replaced"
    assert not any(_alive(e.pid) for e in hung_runs), "timed-out children are killed"
    assert elapsed < 20
    [entry] = [f for _, f in redis.xrange(f"buraq:{{{name}}}:dlq")]
    assert entry[b"error_type"] == b"TaskTimeout"
    assert b"its process was killed" in entry[b"error"]
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0, server.output()
    assert pending(redis, name) == 0


def test_handler_calling_os_exit_in_a_child_fails_the_attempt_not_the_worker(project: Project, redis) -> None:
    install(project)
    name = project.pipeline("isolated", """
        handler: fault.exit
        executor: process
        pool: 2
        retry: {attempts: 2, backoff: {initial: 100ms, jitter: 0}}
    """)
    poison = project.buraq("enqueue", name, '{"die": true}').stdout.strip()
    good = project.buraq("enqueue", name, input='{"die": false}\n' * 10).stdout.split()
    server = project.serve()
    server.wait_ready()
    wait_for(lambda: poison in dlq_ids(redis, name) and len(events(project, "done")) == 10, timeout=60,
             message="poison dead-lettered and good tasks done")
    [entry] = [f for _, f in redis.xrange(f"buraq:{{{name}}}:dlq")]
    assert entry[b"reason"] == b"handler_error"
    assert entry[b"error_type"] == b"HandlerProcessDied"
    assert entry[b"attempts"] == b"2"
    assert sorted(e.task_id for e in events(project, "done")) == sorted(good)
    assert server.process.poll() is None, "the worker itself survived"
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0


def test_after_a_second_signal_another_worker_takes_over_at_once(project: Project, redis) -> None:
    # Given a worker stopped hard (second signal) while 5 long tasks run, with a long lease
    install(project)
    name = project.pipeline("handover", """
        handler: fault.work
        pool: 5
        lease: 60s
        options: {seconds: 30}
    """)
    ids = project.buraq("enqueue", name, input="{}\n" * 5).stdout.split()
    first = project.serve()
    wait_for(lambda: len(events(project, "start")) == 5, message="5 tasks started")
    first.signal(signal.SIGTERM)
    time.sleep(0.3)
    first.signal(signal.SIGINT)
    assert first.wait(10) == 130
    assert pending(redis, name) == 5

    # When another worker starts (quick tasks now)
    (project.pipelines / "handover.yaml").write_text(
        (project.pipelines / "handover.yaml").read_text().replace("seconds: 30", "seconds: 0.01"))
    started = time.monotonic()
    second = project.serve()

    # Then it takes the 5 over without waiting out the 60 s lease: the first worker left the group
    wait_for(lambda: len(events(project, "done")) == 5, timeout=20, message="tasks taken over")
    assert time.monotonic() - started < 15
    assert sorted(e.task_id for e in events(project, "done")) == sorted(ids)
    assert {e.attempt for e in events(project, "done")} == {2}
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
