"""`buraq status` and `buraq inspect` against real queue state: a running task, queued ones, a
delayed one and a dead-lettered one, as tables for people and JSON for scripts."""

from __future__ import annotations

import json
import re
import signal

from conftest import Project, wait_for


def test_status_and_inspect_show_where_every_task_is(recorder: Project, redis) -> None:
    # Given a pipeline with pool 1 running a 20 s task, two tasks queued behind it, one delayed and one dead
    name = recorder.pipeline("places", """
        handler: test.slow
        pool: 1
        options: {seconds: 20}
    """)
    redis.xadd(f"buraq:{{{name}}}:tasks", {"id": "poison-1", "payload": "not json"})  # read first, dead at once
    running = recorder.buraq("enqueue", name, "{}").stdout.strip()
    server = recorder.serve()
    server.wait_ready()
    wait_for(lambda: recorder.recorded("start"), message="the first task running")
    queued = recorder.buraq("enqueue", name, input="{}\n{}\n").stdout.split()
    delayed = recorder.buraq("enqueue", name, "{}", "--delay", "1h").stdout.strip()
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 1

    # When status runs, as JSON and as a table
    status = json.loads(recorder.buraq("status", "--json").stdout)
    table = recorder.buraq("status").stdout

    # Then the numbers and the consumer holding the running task are right in both
    [row] = status
    assert (row["depth"], row["queued"], row["pending"], row["delayed"], row["dlq"]) == (3, 2, 1, 1, 1)
    assert row["oldest_pending_age"] > 0
    [consumer] = row["consumers"]
    assert consumer["pending"] == 1 and consumer["idle_ms"] >= 0
    lines = table.splitlines()
    assert lines[0].split() == ["PIPELINE", "DEPTH", "QUEUED", "PENDING", "DELAYED", "DLQ", "OLDEST", "PENDING",
                                "CONSUMERS"]
    assert lines[1].split()[:6] == [name, "3", "2", "1", "1", "1"]
    assert re.fullmatch(rf"\s+{re.escape(consumer['name'])}: 1 in flight, idle \d+\.\ds", lines[2])

    # And inspect finds each task where it is
    def where(task_id: str) -> list[dict[str, object]]:
        result = recorder.buraq("inspect", task_id, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    [place] = where(running)
    assert (place["where"], place["state"], place["consumer"], place["deliveries"]) == \
        ("stream", "pending", consumer["name"], 1)
    assert [p["state"] for p in where(queued[0])] == ["queued"]
    assert [p["where"] for p in where(delayed)] == ["delayed"]
    [dead] = where("poison-1")
    assert (dead["where"], dead["reason"]) == ("dlq", "decode")
    text = recorder.buraq("inspect", running).stdout
    assert text.startswith(f"{name}  stream  state pending  consumer {consumer['name']}")
    missing = recorder.buraq("inspect", "no-such-task")
    assert missing.returncode == 1 and "task no-such-task not found" in missing.stderr
    server.signal(signal.SIGINT)
    server.signal(signal.SIGINT)
    server.wait()
