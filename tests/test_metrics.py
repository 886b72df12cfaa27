"""The Prometheus endpoint, fetched over real HTTP, reports what happened."""

from __future__ import annotations

import re
import time
import signal
import urllib.request

from conftest import Project, wait_for


def _sample(text: str, name: str, pipeline: str, extra: str = "") -> float:
    pattern = rf'^{re.escape(name)}\{{(?=[^}}]*pipeline="{re.escape(pipeline)}"){extra}[^}}]*\}} (\S+)$'
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE)]
    assert values, f"no sample {name} for {pipeline}"
    return sum(values)


def test_metrics_endpoint_counts_processed_failed_dlq_and_durations(recorder: Project) -> None:
    good = recorder.pipeline("good", "handler: test.ok\n")
    bad = recorder.pipeline("bad", """
        handler: test.always_fail
        retry: {attempts: 2, backoff: {initial: 50ms, jitter: 0}}
    """)
    recorder.buraq("enqueue", good, input="{}\n" * 7)
    recorder.buraq("enqueue", bad, input="{}\n" * 3)
    server = recorder.serve()
    server.wait_ready()
    wait_for(lambda: f'buraq_tasks_dlq_total{{pipeline="{bad}"' in server.metrics()
             and _sample(server.metrics(), "buraq_tasks_dlq_total", bad) == 3, message="3 dead-lettered")
    text = server.metrics()

    assert _sample(text, "buraq_tasks_processed_total", good) == 7
    assert _sample(text, "buraq_tasks_failed_total", bad) == 6  # 3 tasks x 2 attempts
    assert _sample(text, "buraq_tasks_retried_total", bad) == 3
    assert _sample(text, "buraq_tasks_dlq_total", bad, extra=r'(?=[^}]*reason="handler_error")') == 3
    assert _sample(text, "buraq_task_duration_seconds_count", good) == 7
    assert _sample(text, "buraq_task_duration_seconds_count", bad) == 6
    assert _sample(text, "buraq_task_duration_seconds_bucket", good, extra=r'(?=[^}]*le="\+Inf")') == 7
    assert 0 < _sample(text, "buraq_task_duration_seconds_sum", good) < 7
    assert _sample(text, "buraq_task_latency_seconds_count", good) == 7
    assert "# TYPE buraq_task_duration_seconds histogram" in text
    # No sample carries a task id label
    assert "task_id" not in text and 'id="' not in text
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_metrics_listen_on_loopback_by_default(recorder: Project) -> None:
    recorder.pipeline("quiet", "handler: test.ok\n")
    server = recorder.serve()
    server.wait_ready()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
    output = server.output()
    assert f"metrics on http://127.0.0.1:{server.port}/metrics" in output
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_gauges_show_slots_queue_depth_oldest_pending_dlq_and_delayed(recorder: Project, redis) -> None:
    # Given 3 slow tasks running in a pool of 4, 5 more waiting, 2 delayed, and 1 dead-lettered
    name = recorder.pipeline("gauged", """
        handler: test.slow
        pool: 4
        options: {seconds: 30}
    """)
    recorder.buraq("enqueue", name, input="{}\n" * 8)
    for _ in range(2):
        recorder.buraq("enqueue", name, "{}", "--delay", "1h")
    redis.xadd(f"buraq:{{{name}}}:dlq", {"id": "x", "reason": "decode"})
    server = recorder.serve()
    server.wait_ready()
    wait_for(lambda: len(recorder.recorded("start")) == 4, message="4 tasks running")
    time.sleep(1.1)  # queue gauges are cached for a second

    # Then the gauges, fetched over HTTP, say so
    text = server.metrics()
    assert _sample(text, "buraq_worker_slots", name) == 4
    assert _sample(text, "buraq_worker_slots_busy", name) == 4
    assert _sample(text, "buraq_queue_depth", name) == 8  # 4 unread + 4 pending
    assert _sample(text, "buraq_queue_pending", name) == 4
    assert 1.0 <= _sample(text, "buraq_oldest_pending_age_seconds", name) < 120
    assert _sample(text, "buraq_dlq_depth", name) == 1
    assert _sample(text, "buraq_delayed_tasks", name) == 2
    assert 'buraq_build_info{' in text and 'version="0.1.0"' in text
    server.signal(signal.SIGINT)
    server.signal(signal.SIGINT)
    server.wait()
