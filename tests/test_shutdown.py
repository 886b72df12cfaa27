"""Graceful shutdown: SIGTERM drains running work; a second signal leaves it pending, never lost."""

from __future__ import annotations

import signal
import time

from conftest import Project, wait_for


def test_sigterm_lets_running_tasks_finish_and_acknowledges_them(recorder: Project, redis) -> None:
    # Given 20 tasks of 2 s each, all running
    name = recorder.pipeline("slow", """
        handler: test.slow
        pool: 20
        options: {seconds: 2}
    """)
    ids = recorder.buraq("enqueue", name, input="{}\n" * 20).stdout.split()
    server = recorder.serve()
    server.wait_ready()
    wait_for(lambda: len(recorder.recorded("start")) == 20, message="20 tasks started")

    # When SIGTERM arrives mid-task
    server.signal(signal.SIGTERM)
    code = server.wait(timeout=30)

    # Then all 20 complete, are acknowledged, and the process exits 0
    assert code == 0, server.output()
    assert sorted(line.split()[0] for line in recorder.recorded("ok")) == sorted(ids)
    assert redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"] == 0
    assert "draining 20 running task(s)" in server.output()


def test_second_signal_exits_at_once_and_leaves_unfinished_tasks_pending(recorder: Project, redis) -> None:
    name = recorder.pipeline("stuck", """
        handler: test.slow
        pool: 5
        options: {seconds: 60}
    """)
    recorder.buraq("enqueue", name, input="{}\n" * 5)
    server = recorder.serve()
    server.wait_ready()
    wait_for(lambda: len(recorder.recorded("start")) == 5, message="5 tasks started")
    server.signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    server.signal(signal.SIGINT)
    code = server.wait(timeout=10)
    assert code == 130, server.output()
    assert time.monotonic() - started < 2
    # Nothing finished, nothing lost: all 5 still pending in the group
    assert recorder.recorded("ok") == []
    assert redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"] == 5


def test_grace_period_expiry_exits_1_and_keeps_tasks_pending(recorder: Project, redis) -> None:
    name = recorder.pipeline("overlong", """
        handler: test.slow
        pool: 2
        options: {seconds: 60}
    """)
    recorder.buraq("enqueue", name, input="{}\n" * 2)
    server = recorder.serve("--grace", "1s")
    server.wait_ready()
    wait_for(lambda: len(recorder.recorded("start")) == 2, message="2 tasks started")
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 1, server.output()
    assert "they stay pending in Redis" in server.output()
    assert redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"] == 2
