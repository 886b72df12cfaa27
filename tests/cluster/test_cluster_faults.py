"""Crashes and key discipline on a Redis Cluster: what makes the cluster tests worth trusting."""

from __future__ import annotations

import re
import signal
from importlib import resources

from redis.cluster import RedisCluster

from conftest import Project, wait_for
from history import dlq_ids, events, install, pending, pending_of
from oracle import assert_valid, check

TASKS = 1000


def test_sigkill_mid_run_then_another_worker_ends_every_task_exactly_once(project: Project,
                                                                          redis: RedisCluster) -> None:
    # Given 1000 tasks of 50 ms on a cluster, and a worker with a 2 s lease
    install(project)
    name = project.pipeline("crashy", "handler: fault.work\npool: 20\nlease: 2s\noptions: {seconds: 0.05}\n")
    enqueued = set(project.buraq("enqueue", name, input="{}\n" * TASKS).stdout.split())
    assert len(enqueued) == TASKS
    first = project.serve("--consumer", "first")
    wait_for(lambda: len(events(project, "done")) >= 100, timeout=30, message="100 tasks done")

    # When it is SIGKILLed mid-run and another worker starts
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    in_flight = pending_of(redis, name, "first")
    assert in_flight, "the kill came when nothing was running; the test proves nothing"
    second = project.serve("--consumer", "second")
    second.wait_ready()
    # (the queue gauges read each pipeline's state, clock included, on its own master)
    assert re.search(rf'buraq_oldest_pending_age_seconds{{pipeline="{name}"}} \d', second.metrics())
    wait_for(lambda: len({e.task_id for e in events(project, "done")}) >= TASKS and pending(redis, name) == 0,
             timeout=60, message="every task done")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.output()

    # Then none is lost or unexpected, and only what the dead worker held ran twice
    verdict = check(enqueued, [e.task_id for e in events(project, "done")], dlq_ids(redis, name))
    assert_valid(verdict, max_extra_runs=len(in_flight))
    assert verdict.dead == set(), verdict.summary()
    restarted = {e.task_id for e in events(project, "start") if e.attempt > 1}
    assert set(in_flight) <= {e.task_id for e in events(project, "start")} and restarted


_CALL = re.compile(r"redis\.p?call\((?P<args>[^\n]*)\)")


def script_key_problems(source: str) -> list[str]:
    """Calls in a Lua script that may name a key not passed in KEYS (illegal on a cluster).

    Every redis.call must name its key as KEYS[n]; the only exceptions are TIME (no key) and a
    call built in a table whose first key is KEYS[n].
    """
    problems = []
    for call in _CALL.finditer(source):
        args = call["args"]
        if args.startswith("'TIME'") or "KEYS[" in args:
            continue
        table = re.match(r"unpack\((\w+)\)", args)
        if table and re.search(rf"local {table[1]} = \{{'\w+', KEYS\[\d\]", source):
            continue
        problems.append(args)
    return problems


def test_every_lua_script_names_all_its_keys_in_KEYS() -> None:
    scripts = [path for path in resources.files("buraq").joinpath("lua").iterdir() if path.name.endswith(".lua")]
    assert len(scripts) >= 10
    for path in scripts:
        source = path.read_text("utf-8")
        assert script_key_problems(source) == [], path.name
        assert "KEYS[" in source, f"{path.name}: a script without KEYS cannot be routed to a cluster node"
    # and the check does catch a key built inside a script
    assert script_key_problems("redis.call('XADD', 'buraq:{x}:dlq', '*', 'a', 1)") == [
        "'XADD', 'buraq:{x}:dlq', '*', 'a', 1"]
