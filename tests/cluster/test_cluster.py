"""The same pipelines, unchanged, on a three-master Redis Cluster (see tests/cluster/conftest.py)."""

from __future__ import annotations

import json
import signal
import time

import redis as redis_sync
from redis.cluster import RedisCluster

from buraq import Client, keys

from conftest import Project, free_port, wait_for

from .conftest import LocalCluster


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


def test_a_delayed_task_and_a_schedule_fire_on_the_cluster(recorder: Project, redis: RedisCluster) -> None:
    # Given a task delayed by 1 s and a schedule ticking every second, in two pipelines
    later = recorder.pipeline("later", "handler: test.ok\n")
    ticking = recorder.pipeline("ticking", """
        handler: test.ok
        schedule:
          - name: tick
            every: 1s
    """)
    with Client(recorder.redis_url, pipelines=str(recorder.pipelines)) as client:
        enqueued_at = time.time()
        delayed_id = client.enqueue(later, {"n": 1}, delay=1.0)

    # When a worker serves both
    server = recorder.serve()
    wait_for(lambda: delayed_id in _ids(recorder, "ok") and
             sum(i.startswith("tick@") for i in _ids(recorder, "ok")) >= 2,
             timeout=20, message="the delayed task and two ticks")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.output()

    # Then the delayed task ran once, not before its delay, and each tick fired once
    [started] = [float(line.split()[2]) for line in recorder.recorded("ok") if line.startswith(delayed_id)]
    assert started >= enqueued_at + 1.0
    ticks = [i for i in _ids(recorder, "ok") if i.startswith("tick@")]
    assert len(ticks) == len(set(ticks))
    assert redis.zcard(keys.delayed_key(keys.default_stream(later))) == 0
    [row] = _json_rows(recorder, "schedule", "list")
    assert (row["pipeline"], row["schedule"]) == (ticking, "tick") and row["last_fire"] is not None


def test_pipelines_spread_over_the_masters_and_keep_their_keys_in_one_slot(
        recorder: Project, redis: RedisCluster, cluster: LocalCluster) -> None:
    # Given two pipelines per master, found by asking the cluster where their streams live
    masters = {node.port: node for node in redis.get_primaries()}
    per_master: dict[int, list[str]] = {port: [] for port in masters}
    for n in range(1000):
        if all(len(names) == 2 for names in per_master.values()):
            break
        candidate = recorder.name(f"spread{n}")
        owner = redis.get_node_from_key(keys.default_stream(candidate)).port
        if len(per_master[owner]) < 2:
            per_master[owner].append(candidate)
            (recorder.pipelines / f"spread{n}.yaml").write_text(
                f"name: {candidate}\nhandler: test.always_fail\nretry: {{attempts: 1}}\n")
    names = [name for names in per_master.values() for name in names]
    assert len(names) == 6
    with Client(recorder.redis_url, pipelines=str(recorder.pipelines)) as client:
        for name in names:
            client.enqueue_many(name, [{"n": i} for i in range(20)])

    # When one worker serves all six until idle
    _burst(recorder)

    # Then every task ran and was dead-lettered in its own pipeline, on its own master
    assert len(recorder.recorded("fail")) == 120
    rows = {row["pipeline"]: row for row in _json_rows(recorder, "status")}
    assert all(rows[name]["dlq"] == 20 and rows[name]["pending"] == 0 for name in names)
    nodes = _cluster_nodes(cluster)
    for port, owned in per_master.items():
        for name in owned:
            stream = keys.default_stream(name)
            pipeline_keys = [stream, keys.default_dlq(stream), keys.delayed_key(stream),
                             keys.sibling(stream, "consumers"), keys.sibling(stream, "schedules")]
            # CLUSTER KEYSLOT, asked of the server: one slot for all of them, served by that master
            slots = {redis.cluster_keyslot(key) for key in pipeline_keys}
            assert len(slots) == 1
            assert _serves(nodes[port], slots.pop())
            with redis_sync.Redis(port=port) as node:
                assert node.exists(stream, keys.default_dlq(stream)) == 2


def _cluster_nodes(cluster: LocalCluster) -> dict[int, list[tuple[int, int]]]:
    """CLUSTER NODES, parsed: each master's port and the slot ranges it serves."""
    with redis_sync.Redis(port=cluster.ports[0], decode_responses=True) as node:
        text = node.execute_command("CLUSTER", "NODES")
    ranges: dict[int, list[tuple[int, int]]] = {}
    for line in text.strip().splitlines():
        parts = line.split()
        if "master" not in parts[2]:
            continue
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        ranges[port] = [tuple(int(x) for x in (r.split("-") * 2)[:2]) for r in parts[8:]
                        if not r.startswith("[")]  # type: ignore[misc]
    return ranges


def _serves(slot_ranges: list[tuple[int, int]], slot: int) -> bool:
    return any(low <= slot <= high for low, high in slot_ranges)


def test_a_redis_cluster_url_asks_for_cluster_mode_and_a_plain_server_refuses_it(
        project: Project, cluster: LocalCluster, tmp_path) -> None:
    # Given one pipeline, the cluster named by a redis+cluster:// URL, and a plain Redis beside it
    project.pipeline("schemed", "handler: builtin.noop\n")
    from redis_server import OwnRedis  # tests/faults: a server of this test's own

    plain = OwnRedis(tmp_path / "plain", free_port())
    plain.start()
    try:
        # When status asks each of them
        on_cluster = project.buraq("status", "--redis-url", f"redis+cluster://127.0.0.1:{cluster.ports[1]}")
        on_plain = project.buraq("status", "--redis-url", f"redis+cluster://127.0.0.1:{plain.port}")
    finally:
        plain.kill()
    on_nothing = project.buraq("status", "--redis-url", f"redis+cluster://127.0.0.1:{plain.port}")

    # Then the cluster answers, and the plain server is a clear user error, not a hang or a traceback
    assert on_cluster.returncode == 0, on_cluster.stderr
    assert project.name("schemed") in on_cluster.stdout
    assert on_plain.returncode == 1
    assert "not a cluster node" in on_plain.stderr and "Traceback" not in on_plain.stderr
    # and a cluster URL where nothing listens is "cannot reach Redis", as for one Redis
    assert on_nothing.returncode == 1 and "cannot reach Redis" in on_nothing.stderr, on_nothing.stderr


def test_two_processes_under_one_supervisor_share_a_pipeline_and_read_its_gauges(
        recorder: Project, redis: RedisCluster, cluster: LocalCluster) -> None:
    # Given 100 tasks of a pipeline on another master than the node named by the plain URL
    base = next(f"shared{n}" for n in range(100)
                if redis.get_node_from_key(keys.default_stream(recorder.name(f"shared{n}"))).port != cluster.ports[0])
    name = recorder.pipeline(base, "handler: test.ok\npool: 4\n")
    ids = recorder.buraq("enqueue", name, input="{}\n" * 100).stdout.split()

    # When `serve --processes 2` runs them
    server = recorder.serve("--processes", "2")
    wait_for(lambda: len(recorder.recorded("ok")) >= 100, timeout=30, message="100 tasks done")

    # Then each task ran once, and the supervisor's queue gauges read the pipeline on its master
    wait_for(lambda: f'buraq_queue_depth{{pipeline="{name}"}} 0.0' in server.metrics(), timeout=15,
             message="queue depth 0 on the supervisor's /metrics")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.output()
    assert sorted(_ids(recorder, "ok")) == sorted(ids)
