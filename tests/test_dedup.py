"""Idempotent enqueue: a key remembered for the pipeline's dedup window returns the first task's id."""

from __future__ import annotations

import asyncio
import time

import pytest

from buraq import AsyncClient, Client
from buraq.errors import TaskRejected
from conftest import Project


def test_same_key_returns_the_original_id_and_the_task_runs_once(recorder: Project, redis) -> None:
    # Given a pipeline, and one key enqueued three ways: Client, AsyncClient and the CLI
    name = recorder.pipeline("orders", "handler: test.ok\n")
    with Client(recorder.redis_url, recorder.pipelines) as client:
        first = client.enqueue(name, {"order": 42}, key="order-42")
        again = client.enqueue(name, {"order": 42, "retry": True}, key="order-42")
        other = client.enqueue(name, {"order": 43}, key="order-43")

    async def produce() -> str:
        async with AsyncClient(recorder.redis_url, recorder.pipelines) as client:
            return await client.enqueue(name, {"order": 42}, key="order-42")

    from_async = asyncio.run(produce())
    cli = recorder.buraq("enqueue", name, '{"order": 42}', "--key", "order-42")
    assert cli.returncode == 0, cli.stderr

    # Then every repeat returns the first id and the stream holds one entry per key
    assert again == from_async == cli.stdout.strip() == first
    assert other != first
    assert redis.xlen(f"buraq:{{{name}}}:tasks") == 2
    assert 0 < redis.pttl(f"buraq:{{{name}}}:dedup:order-42") <= 24 * 3600 * 1000

    # When the pipeline runs, each task runs once
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr
    assert sorted(line.split()[0] for line in recorder.recorded("ok")) == sorted([first, other])


def test_the_key_is_forgotten_after_the_window(recorder: Project, redis) -> None:
    name = recorder.pipeline("short", "handler: test.ok\ndedup: {window: 300ms}\n")
    with Client(recorder.redis_url, recorder.pipelines) as client:
        first = client.enqueue(name, {"n": 1}, key="k")
        assert client.enqueue(name, {"n": 1}, key="k") == first
        time.sleep(0.5)
        later = client.enqueue(name, {"n": 1}, key="k")
    assert later != first
    assert redis.xlen(f"buraq:{{{name}}}:tasks") == 2


def test_enqueue_many_takes_a_key_per_payload(recorder: Project, redis) -> None:
    name = recorder.pipeline("batch", "handler: test.ok\n")
    with Client(recorder.redis_url, recorder.pipelines) as client:
        ids = client.enqueue_many(name, [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}], keys=["a", None, "a", "b"])
        repeat = client.enqueue_many(name, [{"n": 1}, {"n": 4}], keys=["a", "b"])
    assert ids[0] == ids[2] and len({ids[0], ids[1], ids[3]}) == 3
    assert repeat == [ids[0], ids[3]]
    assert redis.xlen(f"buraq:{{{name}}}:tasks") == 3


def test_keys_are_checked_before_anything_is_sent(recorder: Project, redis) -> None:
    name = recorder.pipeline("checked", "handler: test.ok\n")
    with Client(recorder.redis_url, recorder.pipelines) as client:
        with pytest.raises(TaskRejected, match="delay"):
            client.enqueue(name, {}, key="k", delay=5)
        with pytest.raises(TaskRejected, match="2 items for 3 payloads"):
            client.enqueue_many(name, [1, 2, 3], keys=["a", "b"])
        with pytest.raises(TaskRejected, match="non-empty"):
            client.enqueue(name, {}, key="")
    assert redis.exists(f"buraq:{{{name}}}:tasks") == 0
    cli = recorder.buraq("enqueue", name, "--key", "k", input="1\n2\n")
    assert cli.returncode == 1 and "--key takes exactly one payload" in cli.stderr


def test_concurrent_producers_with_one_key_add_one_task(recorder: Project, redis) -> None:
    # Given 20 producers racing on one key
    name = recorder.pipeline("race", "handler: test.ok\n")

    async def race() -> list[str]:
        async with AsyncClient(recorder.redis_url, recorder.pipelines) as client:
            return await asyncio.gather(*(client.enqueue(name, {"n": i}, key="same") for i in range(20)))

    ids = asyncio.run(race())
    # Then all got the same id, and exactly one entry exists
    assert len(set(ids)) == 1
    assert redis.xlen(f"buraq:{{{name}}}:tasks") == 1
