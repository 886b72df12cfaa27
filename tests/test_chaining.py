"""Chaining: `output:` forwards a handler's result as new tasks, before the source is acknowledged."""

from __future__ import annotations

import json
import signal

from conftest import Project, wait_for

CHAIN_PLUGIN = '''
import json, os, signal
import buraq

def record(kind, *parts):
    with open(os.path.join(os.environ["BURAQ_RECORDS"], kind), "a") as f:
        f.write(" ".join(str(p) for p in parts) + "\\n")

async def tag(task):
    """Add this pipeline to payload.via; return None (stop the chain) when payload.stop is set."""
    record("ran", task.pipeline, task.id, os.getpid())
    if task.payload.get("stop"):
        return None
    return {**task.payload, "via": task.payload.get("via", []) + [task.pipeline]}

async def sink(task):
    record("sink", task.pipeline, task.id, json.dumps(task.payload, sort_keys=True))

class KillAfterForward:
    """SIGKILLs its own worker once, right after a success of a pipeline named in $KILL_AFTER_FORWARD.

    task_succeeded fires after the forwards were confirmed and the ack was queued, but before the
    batched XACK can be sent (nothing awaits in between): the window the test needs.
    """
    def task_succeeded(self, task, duration):
        marker = os.path.join(os.environ["BURAQ_RECORDS"], "killed")
        if task.pipeline == os.environ.get("KILL_AFTER_FORWARD") and not os.path.exists(marker):
            open(marker, "w").write(task.id)
            os.kill(os.getpid(), signal.SIGKILL)

@buraq.hookimpl
def register_handlers(register):
    register("chain.tag", tag)
    register("chain.sink", sink)

@buraq.hookimpl
def register_observers(register):
    register(KillAfterForward())
'''


def _chain_project(project: Project) -> dict[str, str]:
    project.plugin("chain.py", CHAIN_PLUGIN)
    names = {base: project.name(base) for base in ("first", "second", "third", "final")}
    raw = f"raw:{{{names['first']}-out}}:results"
    project.pipeline("first", f"handler: chain.tag\nlease: 1s\noutput: [{names['second']}, {names['third']}, '{raw}']\n")
    project.pipeline("second", f"handler: chain.tag\nlease: 1s\noutput: {names['final']}\n")
    project.pipeline("third", "handler: chain.sink\nlease: 1s\n"
                              "payload_schema: {type: object, required: [via]}\n")
    project.pipeline("final", "handler: chain.sink\nlease: 1s\n")
    names["raw"] = raw
    return names


def _sinks(project: Project) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for line in project.recorded("sink"):
        pipeline, _task_id, payload = line.split(" ", 2)
        found.setdefault(pipeline, []).append(json.loads(payload))
    return found


def test_three_stages_fan_out_and_none_stops_the_chain(project: Project, redis) -> None:
    # Given first -> [second, third, a raw stream], second -> final, served by two processes
    names = _chain_project(project)
    servers = [project.serve(), project.serve()]
    for server in servers:
        server.wait_ready()

    # When two tasks go through and one says stop
    ids = [project.buraq("enqueue", names["first"], payload).stdout.strip()
           for payload in ('{"n": 1}', '{"n": 2}', '{"n": 3, "stop": true}')]

    # Then each forwarded task reached every target once, with the stages it passed
    wait_for(lambda: len(project.recorded("sink")) >= 4, message="4 sink runs")
    sinks = _sinks(project)
    assert sorted(p["n"] for p in sinks[names["third"]]) == [1, 2]
    assert sorted(p["n"] for p in sinks[names["final"]]) == [1, 2]
    assert all(p["via"] == [names["first"], names["second"]] for p in sinks[names["final"]])
    assert all(p["via"] == [names["first"]] for p in sinks[names["third"]])
    # And the raw stream got JSON with its parent
    raw = redis.xrange(names["raw"])
    assert sorted(json.loads(fields[b"payload"])["n"] for _, fields in raw) == [1, 2]
    assert {fields[b"parent"].decode() for _, fields in raw} == {f"{names['first']}/{i}" for i in ids[:2]}
    # And the task returning None forwarded nothing: first ran 3 times, second twice
    ran = [line.split()[0] for line in project.recorded("ran")]
    assert ran.count(names["first"]) == 3 and ran.count(names["second"]) == 2
    for server in servers:
        server.signal(signal.SIGTERM)
    for server in servers:
        assert server.wait() == 0, server.output()
    assert len(project.recorded("sink")) == 4
    for base in ("first", "second", "third", "final"):
        assert redis.xpending(f"buraq:{{{names[base]}}}:tasks", "buraq")["pending"] == 0


def test_a_crash_between_forward_and_ack_forwards_once(project: Project, redis) -> None:
    # Given a worker that SIGKILLs itself after its first forward of 'first', before the ack goes out
    names = _chain_project(project)
    killed = project.serve(env=project.env(KILL_AFTER_FORWARD=names["first"]))
    killed.wait_ready()
    task_id = project.buraq("enqueue", names["first"], '{"n": 7}').stdout.strip()
    assert killed.wait(30) == -signal.SIGKILL
    source = f"buraq:{{{names['first']}}}:tasks"
    # The forwards are in Redis, the source is still pending
    assert redis.xlen(f"buraq:{{{names['second']}}}:tasks") == 1
    assert redis.xpending(source, "buraq")["pending"] == 1

    # When another worker takes the task over (the dead one's lease of 1s runs out) and runs it again
    rescuer = project.serve()
    rescuer.wait_ready()
    wait_for(lambda: redis.xpending(source, "buraq")["pending"] == 0, message="the source acknowledged")
    wait_for(lambda: len(project.recorded("sink")) >= 2, message="both sinks ran")

    # Then the handler ran twice (at least once), but each target got one task
    runs = [line.split() for line in project.recorded("ran") if line.startswith(names["first"] + " ")]
    assert [r[1] for r in runs] == [task_id, task_id] and runs[0][2] != runs[1][2]
    for base in ("second", "third"):
        assert redis.xlen(f"buraq:{{{names[base]}}}:tasks") == 1, base
    assert len(redis.xrange(names["raw"])) == 1
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait() == 0, rescuer.output()
    # (a downstream task may itself have been in flight in the killed worker and run twice: one task id)
    for base in ("third", "final"):
        task_ids = {line.split()[1] for line in project.recorded("sink") if line.startswith(names[base] + " ")}
        assert len(task_ids) == 1, (base, project.recorded("sink"))
    assert "already forwarded" in rescuer.output()


def test_a_result_the_target_refuses_fails_the_source_and_forwards_nothing(project: Project, redis) -> None:
    # Given a target whose payload_schema the result cannot match
    project.plugin("chain.py", CHAIN_PLUGIN)
    strict = project.pipeline("strict", "handler: chain.sink\npayload_schema: {type: object, required: [never]}\n")
    loose = project.pipeline("loose", "handler: chain.sink\n")
    source = project.pipeline("source", f"handler: chain.tag\noutput: [{loose}, {strict}]\n"
                                        "retry: {attempts: 2, backoff: {initial: 100ms, jitter: 0}}\n")
    project.buraq("enqueue", source, '{"n": 1}')
    result = project.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr
    # Then nothing was forwarded (not even to the target that would take it) and the source is in the DLQ
    assert redis.xlen(f"buraq:{{{loose}}}:tasks") == 0 and redis.xlen(f"buraq:{{{strict}}}:tasks") == 0
    dead = redis.xrange(f"buraq:{{{source}}}:dlq")
    assert len(dead) == 1 and dead[0][1][b"error_type"] == b"TaskRejected"
    assert b"payload does not match payload_schema" in dead[0][1][b"error"]


def test_validate_reports_cycles_and_unknown_targets_at_the_output_line(project: Project) -> None:
    (project.pipelines / "loop.yaml").write_text(
        "- name: a\n  handler: builtin.noop\n  output: b\n"
        "- name: b\n  handler: builtin.noop\n  output: [c, a]\n"
        "- name: c\n  handler: builtin.noop\n"
        "- name: d\n  handler: builtin.noop\n  output: [enrch, 'ok:{raw}:out']\n"
        "- name: e\n  handler: builtin.noop\n  output: e\n")
    result = project.buraq("validate", "pipelines")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "pipelines/loop.yaml:3: pipeline 'a': output forms a cycle a -> b -> a " \
           "(each task would feed the next one forever)" in lines
    assert any(line.startswith("pipelines/loop.yaml:11: pipeline 'd': output 'enrch': no pipeline of that name")
               for line in lines)
    assert any(line.startswith("pipelines/loop.yaml:14: pipeline 'e': output forms a cycle e -> e") for line in lines)
    assert not any("ok:{raw}:out" in line for line in lines)  # a raw stream is fine
    assert len(lines) == 3, lines


def test_the_shipped_three_stage_example_runs(project: Project, tmp_path) -> None:
    # Given the repository's pipelines/ (ingest -> enrich -> store, buraq-jsonl at the end)
    from conftest import ROOT

    store = tmp_path / "store.jsonl"
    env = project.env(BURAQ_STORE_FILE=str(store), BURAQ_EVENTS_FILE=str(tmp_path / "events.jsonl"))
    suffix = project.suffix
    for name in ("ingest", "enrich", "store"):
        text = (ROOT / "pipelines" / f"{name}.yaml").read_text()
        for other in ("ingest", "enrich", "store"):  # unique names, so runs never share streams
            text = text.replace(f"name: {other}\n", f"name: {other}-{suffix}\n")
            text = text.replace(f"output: {other}\n", f"output: {other}-{suffix}\n")
        (project.pipelines / f"{name}.yaml").write_text(text)
    assert project.buraq("validate", "pipelines", env=env).returncode == 0
    enqueued = project.buraq("enqueue", f"ingest-{suffix}", '{"sensor": "t1", "celsius": 21.5}', env=env)
    assert enqueued.returncode == 0, enqueued.stderr
    result = project.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off", env=env)
    assert result.returncode == 0, result.stderr
    # Then the reading arrived at the end, tagged by both stages
    line = json.loads(store.read_text())
    assert line["pipeline"] == f"store-{suffix}"
    assert line["payload"] == {"sensor": "t1", "celsius": 21.5, "source": "ingest", "site": "lab-1", "enriched": True}
