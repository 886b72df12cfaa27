"""Three ways to produce tasks, one `buraq serve` to process them all."""

from __future__ import annotations

import json
import signal

from buraq import Client

from conftest import Project, wait_for

N = 1000


def test_python_cli_and_raw_xadd_tasks_are_all_processed_once(recorder: Project, redis) -> None:
    # Given a pipeline whose handler records each task id it runs
    name = recorder.pipeline("orders", """
        handler: test.ok
        pool: 50
    """)
    stream = f"buraq:{{{name}}}:tasks"

    # When 1,000 tasks arrive through each producer path
    with Client(recorder.redis_url, pipelines=str(recorder.pipelines)) as client:
        python_ids = client.enqueue_many(name, [{"source": "python", "n": i} for i in range(N)])
    lines = "\n".join(json.dumps({"source": "cli", "n": i}) for i in range(N))
    cli = recorder.buraq("enqueue", name, input=lines)
    assert cli.returncode == 0, cli.stderr
    cli_ids = cli.stdout.split()
    with redis.pipeline(transaction=False) as pipe:
        for i in range(N):
            pipe.xadd(stream, {"payload": json.dumps({"source": "raw", "n": i})})
        raw_ids = [entry_id.decode() for entry_id in pipe.execute()]

    server = recorder.serve()
    server.wait_ready()

    # Then every id is processed exactly once and the counters agree
    expected = set(python_ids) | set(cli_ids) | set(raw_ids)
    assert len(expected) == 3 * N
    wait_for(lambda: len(recorder.recorded("ok")) >= 3 * N, timeout=60, message="3,000 tasks")
    seen = [line.split()[0] for line in recorder.recorded("ok")]
    assert sorted(seen) == sorted(expected)
    wait_for(lambda: f'buraq_tasks_processed_total{{pipeline="{name}"}} 3000.0' in server.metrics(),
             message="processed counter at 3000")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.output()
    assert redis.xpending(stream, "buraq")["pending"] == 0


def test_single_enqueue_prints_the_id_the_handler_sees(recorder: Project) -> None:
    name = recorder.pipeline("single", "handler: test.ok\n")
    result = recorder.buraq("enqueue", name, '{"x": 1}')
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    served = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert served.returncode == 0, served.stderr
    assert [line.split()[:2] for line in recorder.recorded("ok")] == [[task_id, "1"]]


def test_enqueue_rejects_bad_json_and_oversized_payloads_before_redis(recorder: Project, redis) -> None:
    name = recorder.pipeline("strict", "handler: test.ok\nmax_payload: 100\n")
    bad = recorder.buraq("enqueue", name, "{not json")
    assert bad.returncode == 1 and "not valid JSON" in bad.stderr
    big = recorder.buraq("enqueue", name, json.dumps({"blob": "x" * 200}))
    assert big.returncode == 1 and "max_payload is 100" in big.stderr
    unknown = recorder.buraq("enqueue", "no-such-pipeline", "{}")
    assert unknown.returncode == 1 and "no pipeline named 'no-such-pipeline'" in unknown.stderr
    assert redis.exists(f"buraq:{{{name}}}:tasks") == 0
