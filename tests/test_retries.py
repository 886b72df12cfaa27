"""Retries with backoff, and the dead-letter stream when attempts run out."""

from __future__ import annotations

import time
from collections import defaultdict

from conftest import Project, wait_for


def _runs(project: Project, kind: str) -> dict[str, list[tuple[int, float]]]:
    runs: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for line in project.recorded(kind):
        task_id, attempt, at = line.split()[:3]
        runs[task_id].append((int(attempt), float(at)))
    return runs


def test_always_failing_task_runs_attempts_times_with_backoff_then_dead_letters_once(recorder: Project, redis) -> None:
    # Given a handler that always raises, 3 attempts, backoff 0.3s then 0.6s, no jitter
    name = recorder.pipeline("flaky", """
        handler: test.always_fail
        pool: 10
        retry:
          attempts: 3
          backoff: {initial: 300ms, multiplier: 2, max: 10s, jitter: 0}
    """)
    ids = recorder.buraq("enqueue", name, input="\n".join(f'{{"n": {i}}}' for i in range(20))).stdout.split()
    assert len(ids) == 20

    # When the pipeline runs until idle
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr

    # Then each task ran exactly 3 times, attempts 1, 2, 3, spaced by at least the backoff
    runs = _runs(recorder, "fail")
    assert set(runs) == set(ids)
    for task_id, attempts in runs.items():
        assert [a for a, _ in attempts] == [1, 2, 3], task_id
        gaps = [attempts[i + 1][1] - attempts[i][1] for i in range(2)]
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6, (task_id, gaps)
    # And each appears exactly once in the DLQ, with its error and payload
    dlq = redis.xrange(f"buraq:{{{name}}}:dlq")
    assert sorted(fields[b"id"].decode() for _, fields in dlq) == sorted(ids)
    for _, fields in dlq:
        assert fields[b"attempts"] == b"3"
        assert fields[b"error_type"] == b"RuntimeError"
        assert fields[b"error"] == b"boom on attempt 3"
        assert b"Traceback" in fields[b"traceback"] and b"always_fail" in fields[b"traceback"]
        assert fields[b"reason"] == b"handler_error"
        assert fields[b"payload"].startswith(b'{"n":')
    assert redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"] == 0
    assert redis.zcard(f"buraq:{{{name}}}:delayed") == 0


def test_task_failing_twice_then_succeeding_is_processed_once_without_dlq(recorder: Project, redis) -> None:
    name = recorder.pipeline("eventually", """
        handler: test.fail_twice
        retry:
          attempts: 3
          backoff: {initial: 100ms, jitter: 0}
    """)
    task_id = recorder.buraq("enqueue", name, '{"x": 1}').stdout.strip()
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in recorder.recorded("run")] == [[task_id, "1"], [task_id, "2"], [task_id, "3"]]
    assert recorder.recorded("ok") == [f"{task_id} 3"]
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 0


def test_retry_survives_a_restart_of_the_worker(recorder: Project, redis) -> None:
    # Given a task whose retry waits 3 s in Redis's delayed set
    name = recorder.pipeline("later", """
        handler: test.fail_twice
        retry:
          attempts: 3
          backoff: {initial: 3s, multiplier: 1, jitter: 0}
    """)
    task_id = recorder.buraq("enqueue", name, '{"x": 1}').stdout.strip()
    server = recorder.serve()
    server.wait_ready()
    wait_for(lambda: redis.zcard(f"buraq:{{{name}}}:delayed") == 1, message="retry parked")
    # When the worker stops while the retry waits, and a new one starts
    server.signal(__import__("signal").SIGTERM)
    assert server.wait() == 0
    assert redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"] == 0
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    # Then the task still runs to success, once per attempt
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in recorder.recorded("run")] == ["1", "2", "3"]
    assert recorder.recorded("ok") == [f"{task_id} 3"]


def test_hung_async_handler_is_cancelled_at_its_timeout_and_dead_lettered(recorder: Project, redis) -> None:
    # Given a handler that would sleep 60 s, a 300 ms timeout and 2 attempts
    name = recorder.pipeline("hung", """
        handler: test.slow
        timeout: 300ms
        options: {seconds: 60}
        retry: {attempts: 2, backoff: {initial: 100ms, jitter: 0}}
    """)
    task_id = recorder.buraq("enqueue", name, "{}").stdout.strip()
    started = time.monotonic()
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    # Then both attempts are cut off, the slot is freed, and the task is dead-lettered as timed out
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert recorder.recorded("start") == [task_id, task_id]
    assert recorder.recorded("ok") == []
    [(_, fields)] = redis.xrange(f"buraq:{{{name}}}:dlq")
    assert fields[b"error_type"] == b"TaskTimeout"
    assert fields[b"error"] == b"task exceeded its timeout of 0.3s"
    assert fields[b"attempts"] == b"2"


def test_rejected_task_goes_to_the_dlq_at_once_without_retries(recorder: Project, redis) -> None:
    # Given a handler that raises buraq.Reject, in a thread and in a child process, with 5 attempts allowed
    for executor in ("thread", "process"):
        name = recorder.pipeline(f"reject-{executor}", f"""
            handler: test.reject
            executor: {executor}
            retry: {{attempts: 5, backoff: {{initial: 10ms}}}}
        """)
        task_id = recorder.buraq("enqueue", name, '{"n": 7}').stdout.strip()

        # When the pipeline runs until idle
        result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
        assert result.returncode == 0, result.stderr

        # Then it ran once and was dead-lettered as rejected, with the handler's message
        runs = [line for line in recorder.recorded("reject") if line.startswith(task_id)]
        assert runs == [f"{task_id} 1"], executor
        [(_, fields)] = redis.xrange(f"buraq:{{{name}}}:dlq")
        assert fields[b"reason"] == b"rejected"
        assert fields[b"error_type"] == b"Reject"
        assert fields[b"error"] == b"order 7 can never succeed"
        assert fields[b"attempts"] == b"1"
        (recorder.pipelines / f"reject-{executor}.yaml").unlink()


def test_a_handlers_own_timeout_error_is_its_failure_not_the_pipelines_timeout(recorder: Project, redis) -> None:
    # Given a handler that raises TimeoutError itself (say a socket timeout), with and without `timeout:`
    names = [recorder.pipeline("own-timeout-none", "handler: test.own_timeout\nretry: {attempts: 1}\n"),
             recorder.pipeline("own-timeout-30s", "handler: test.own_timeout\ntimeout: 30s\nretry: {attempts: 1}\n")]
    for name in names:
        recorder.buraq("enqueue", name, "{}")

    # When the pipelines run until idle
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr

    # Then each task is dead-lettered with the handler's own error, not as a pipeline timeout
    for name in names:
        [(_, fields)] = redis.xrange(f"buraq:{{{name}}}:dlq")
        assert (fields[b"error_type"], fields[b"error"]) == (b"TimeoutError", b"socket read timed out"), name
