"""SIGHUP reloads the pipeline files: valid changes are swapped in under load, invalid ones refused."""

from __future__ import annotations

import signal
import threading
import time

from conftest import Project, Server, wait_for


def _done(project: Project) -> list[str]:
    return [line.split()[0] for line in project.recorded("ok")]


def _enqueue_steadily(project: Project, name: str, batches: int, per_batch: int, ids: list[str]) -> threading.Thread:
    """Enqueue in the background, one batch every 100 ms, so the reload happens under load."""
    def run() -> None:
        for _ in range(batches):
            ids.extend(project.buraq("enqueue", name, input="{}\n" * per_batch).stdout.split())
            time.sleep(0.1)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _reloaded(server: Server, times: int = 1) -> bool:
    return server.output().count("reloaded:") >= times


def test_reload_under_load_adds_removes_and_restarts_pipelines_without_losing_a_task(recorder: Project, redis) -> None:
    # Given a busy pipeline, and one that is running a slow task
    busy = recorder.pipeline("busy", "handler: test.ok\npool: 4\n")
    old = recorder.pipeline("old", "handler: test.slow\noptions: {seconds: 2}\n")
    server = recorder.serve()
    server.wait_ready()
    slow_id = recorder.buraq("enqueue", old, "{}").stdout.strip()
    wait_for(lambda: recorder.recorded("start"), message="the slow task started")
    ids: list[str] = []
    feeder = _enqueue_steadily(recorder, busy, batches=20, per_batch=25, ids=ids)
    time.sleep(0.5)

    # When, mid-load, busy gets a new pool, "old" is removed and "fresh" is added, and serve gets SIGHUP
    recorder.pipeline("busy", "handler: test.ok\npool: 7\n")
    (recorder.pipelines / "old.yaml").unlink()
    fresh = recorder.pipeline("fresh", "handler: test.sync_ok\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: _reloaded(server), message="the reload")
    feeder.join()
    fresh_id = recorder.buraq("enqueue", fresh, "{}").stdout.strip()
    late_old = redis.xadd(f"buraq:{{{old}}}:tasks", {"payload": "{}"}).decode()  # its file is gone: raw XADD

    # Then every busy task is done, the slow task finished its drain, fresh runs and old reads no more
    wait_for(lambda: set(ids) | {fresh_id, slow_id} <= set(_done(recorder)), timeout=60, message="all done")
    assert len(ids) == 500
    output = server.output()
    assert f"reloaded: added {fresh}; removed {old}; changed {busy}" in output
    time.sleep(1)
    assert late_old not in _done(recorder)
    assert redis.xinfo_groups(f"buraq:{{{old}}}:tasks")[0]["lag"] == 1
    text = server.metrics()
    assert f'buraq_worker_slots{{pipeline="{busy}"}} 7.0' in text
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_an_invalid_reload_is_refused_with_file_and_line_and_the_old_set_keeps_running(recorder: Project, redis) -> None:
    name = recorder.pipeline("steady", "handler: test.ok\n")
    server = recorder.serve()
    server.wait_ready()

    # When the file gets a mistake on line 3 and serve gets SIGHUP
    (recorder.pipelines / "steady.yaml").write_text(f"name: {name}\nhandler: test.ok\npol: 3\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.output(), message="the refusal")

    # Then the log names the file and line, and the pipeline keeps running as before
    assert "steady.yaml:3: unknown key pol" in server.output()
    task_id = redis.xadd(f"buraq:{{{name}}}:tasks", {"payload": "{}"}).decode()  # `buraq enqueue` reads the broken file
    wait_for(lambda: task_id in _done(recorder), message="a task after the refused reload")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_supervisor_checks_once_and_every_child_reloads(recorder: Project) -> None:
    recorder.pipeline("first", "handler: test.ok\n")
    server = recorder.serve("--processes", "2")
    server.wait_ready()
    wait_for(lambda: server.output().count("serving 1 pipeline(s)") == 2, message="two children serving")

    # An invalid file is refused by the supervisor and never reaches the children
    (recorder.pipelines / "broken.yaml").write_text("name: [oops\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.output(), message="the refusal")
    assert "broken.yaml" in server.output() and "reloaded:" not in server.output()

    # A valid one reaches both children, and the new pipeline runs and shows on the dashboard's API
    (recorder.pipelines / "broken.yaml").unlink()
    second = recorder.pipeline("second", "handler: test.ok\npool: 3\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: _reloaded(server, times=2), message="both children reloaded")
    ids = recorder.buraq("enqueue", second, input="{}\n" * 30).stdout.split()
    wait_for(lambda: set(ids) <= set(_done(recorder)), message="the new pipeline's tasks")
    wait_for(lambda: f'buraq_worker_slots{{pipeline="{second}"}} 6.0' in server.metrics(),
             message="slots of the new pipeline summed over both children")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_pipeline_re_added_while_its_old_task_still_runs_does_not_run_it_twice(recorder: Project) -> None:
    # Given a pipeline running a 4 s task (beside one that stays), and a grace period of 1 s
    recorder.pipeline("stays", "handler: test.ok\n")
    name = recorder.pipeline("comeback", "handler: test.slow\noptions: {seconds: 4}\n")
    body = (recorder.pipelines / "comeback.yaml").read_text()
    server = recorder.serve("--grace", "1s")
    server.wait_ready()
    task_id = recorder.buraq("enqueue", name, "{}").stdout.strip()
    wait_for(lambda: recorder.recorded("start"), message="the slow task started")

    # When the pipeline is removed (its task outlives the grace and runs on) and then added back
    (recorder.pipelines / "comeback.yaml").unlink()
    server.signal(signal.SIGHUP)
    wait_for(lambda: _reloaded(server), message="the removal")
    (recorder.pipelines / "comeback.yaml").write_text(body)
    server.signal(signal.SIGHUP)
    wait_for(lambda: _reloaded(server, times=2), message="the re-adding")

    # Then the new reader starts under a fresh consumer name, and the task ran once and ended once
    wait_for(lambda: task_id in _done(recorder), timeout=30, message="the slow task done")
    time.sleep(2)  # a second run, if any, would have started by now
    assert recorder.recorded("start") == [task_id]
    assert _done(recorder) == [task_id]
    assert "the new settings start as" in server.output()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_reload_checks_handler_options_as_a_start_does(recorder: Project) -> None:
    name = recorder.pipeline("opts", "handler: builtin.sleep\noptions: {seconds: 0}\n")
    server = recorder.serve()
    server.wait_ready()
    (recorder.pipelines / "opts.yaml").write_text(f"name: {name}\nhandler: builtin.sleep\noptions: {{secondz: 5}}\n")
    server.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.output(), message="the refusal")
    assert "opts.yaml:3: unknown key options.secondz" in server.output()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
