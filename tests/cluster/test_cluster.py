"""The same pipelines, unchanged, on a three-master Redis Cluster (see tests/cluster/conftest.py)."""

from __future__ import annotations

import json
import time

from redis.cluster import RedisCluster

from buraq import Client, keys

from conftest import Project, wait_for


def _burst(project: Project) -> None:
    served = project.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert served.returncode == 0, served.stderr


def _json_rows(project: Project, *args: str) -> list[dict]:
    result = project.buraq(*args, "--json")
    assert result.returncode == 0, result.stderr
    if result.stdout.startswith("["):  # status prints one array, the dlq commands one object per line
        return json.loads(result.stdout)
    return [json.loads(line) for line in result.stdout.splitlines()]


def _ids(project: Project, kind: str) -> list[str]:
    return [line.split()[0] for line in project.recorded(kind)]


def test_enqueue_and_burst_serve_run_every_task_once(recorder: Project, redis: RedisCluster) -> None:
    # Given 200 tasks enqueued through a plain redis:// URL of one cluster node
    name = recorder.pipeline("plain", "handler: test.ok\npool: 20\n")
    with Client(recorder.redis_url, pipelines=str(recorder.pipelines)) as client:
        ids = client.enqueue_many(name, [{"n": i} for i in range(200)])

    # When a worker serves until idle
    _burst(recorder)

    # Then each ran exactly once and nothing is left pending
    assert sorted(_ids(recorder, "ok")) == sorted(ids)
    assert redis.xpending(keys.default_stream(name), "buraq")["pending"] == 0


def test_retries_then_dead_letter_then_replay_from_the_cli(recorder: Project, redis: RedisCluster) -> None:
    # Given a handler that always fails, 2 attempts, short backoff
    name = recorder.pipeline("doomed", """
        handler: test.always_fail
        retry: {attempts: 2, backoff: {initial: 100ms, jitter: 0}}
    """)
    ids = recorder.buraq("enqueue", name, input="".join(f'{{"n": {i}}}\n' for i in range(5))).stdout.split()

    # When it runs until idle
    _burst(recorder)

    # Then each ran twice, went through the delayed set, and sits once in the DLQ
    runs = [line.split()[:2] for line in recorder.recorded("fail")]
    assert sorted(runs) == sorted([[i, "1"] for i in ids] + [[i, "2"] for i in ids])
    listed = _json_rows(recorder, "dlq", "list", name)
    assert sorted(row["id"] for row in listed) == sorted(ids)
    [status] = _json_rows(recorder, "status")
    assert (status["pipeline"], status["dlq"], status["pending"], status["delayed"]) == (name, 5, 0, 0)

    # And dlq replay puts them back on the stream under the same ids
    _json_rows(recorder, "dlq", "replay", name, "--all")
    assert redis.xlen(keys.default_dlq(keys.default_stream(name))) == 0
    replayed = [fields[b"id"].decode() for _, fields in redis.xrevrange(keys.default_stream(name), count=5)]
    assert sorted(replayed) == sorted(ids)
