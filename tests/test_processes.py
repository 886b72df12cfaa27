"""`buraq serve --processes N`: one command, N workers, one set of metrics, no task lost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Project, Server, wait_for

PID_PLUGIN = '''
import asyncio, os
import buraq

def record(kind, *parts):
    with open(os.path.join(os.environ["BURAQ_RECORDS"], kind), "a") as f:
        f.write(" ".join(str(p) for p in parts) + "\\n")

async def pid_ok(task):
    record("start", task.id, os.getpid())
    await asyncio.sleep(float(task.options.get("seconds", 0)))
    record("ok", task.id, os.getpid())

@buraq.hookimpl
def register_handlers(register):
    register("test.pid_ok", pid_ok)
'''


def _total(text: str, name: str, pipeline: str) -> float:
    pattern = rf'^{re.escape(name)}\{{[^}}]*pipeline="{re.escape(pipeline)}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


def _children(server: Server) -> set[int]:
    """PIDs of the supervisor's children (read from /proc, so no extra tools are needed)."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (an orphan's parent may be a PID 1 that never reaps)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _ok_by_pid(project: Project) -> dict[str, int]:
    return {line.split()[0]: int(line.split()[1]) for line in project.recorded("ok")}


def test_two_processes_share_the_work_and_their_metrics_add_up(project: Project) -> None:
    # Given a pipeline whose tasks take 50 ms, pool 4, and two worker processes under one supervisor
    project.plugin("pids.py", PID_PLUGIN)
    name = project.pipeline("shared", """
        handler: test.pid_ok
        pool: 4
        options: {seconds: 0.05}
    """)
    server = project.serve("--processes", "2")
    server.wait_ready()
    wait_for(lambda: len(_children(server)) == 2, message="two children")
    ids = project.buraq("enqueue", name, input="{}\n" * 200).stdout.split()

    # Then every task is done once, by both processes, and /metrics on the one listener sums them
    wait_for(lambda: len(project.recorded("ok")) >= 200, timeout=60, message="200 tasks done")
    done = _ok_by_pid(project)
    assert sorted(done) == sorted(ids) and len(project.recorded("ok")) == 200
    assert set(done.values()) == _children(server)
    wait_for(lambda: _total(server.metrics(), "buraq_tasks_processed_total", name) == 200,
             message="processed_total 200 summed over both processes")
    text = server.metrics()
    assert _total(text, "buraq_worker_slots", name) == 8  # pool 4 x 2 processes
    assert _total(text, "buraq_task_latency_seconds_count", name) == 200
    wait_for(lambda: _total(server.metrics(), "buraq_queue_depth", name) == 0,
             message="queue depth 0 (queue gauges are cached for a second)")
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0


def test_a_killed_child_is_restarted_and_its_tasks_still_finish(project: Project) -> None:
    # Given two processes running 2-second tasks
    project.plugin("pids.py", PID_PLUGIN)
    name = project.pipeline("crashy", """
        handler: test.pid_ok
        pool: 5
        lease: 2s
        options: {seconds: 2}
    """)
    server = project.serve("--processes", "2")
    server.wait_ready()
    wait_for(lambda: len(_children(server)) == 2, message="two children")
    ids = project.buraq("enqueue", name, input="{}\n" * 10).stdout.split()
    wait_for(lambda: len(project.recorded("start")) >= 10, message="all 10 tasks started")

    # When one child is SIGKILLed mid-task
    victim = int(project.recorded("start")[0].split()[1])
    os.kill(victim, signal.SIGKILL)

    # Then the supervisor starts a new child, and every task ends done (the victim's ones run again)
    wait_for(lambda: len(_children(server)) == 2 and victim not in _children(server), timeout=30,
             message="a replacement child")
    wait_for(lambda: set(_ok_by_pid(project)) == set(ids), timeout=60, message="every task done")
    assert f"(pid {victim}) exited with code -9" in server.output()
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0


def test_sigterm_drains_every_child_and_the_supervisor_exits_0(project: Project) -> None:
    project.plugin("pids.py", PID_PLUGIN)
    name = project.pipeline("drain", """
        handler: test.pid_ok
        pool: 3
        options: {seconds: 1.5}
    """)
    server = project.serve("--processes", "2")
    server.wait_ready()
    children = wait_for(lambda: len(_children(server)) == 2 and _children(server), message="two children")
    ids = project.buraq("enqueue", name, input="{}\n" * 6).stdout.split()
    wait_for(lambda: len(project.recorded("start")) == 6, message="six tasks running in both children")

    # When the supervisor gets SIGTERM while six tasks run
    server.signal(signal.SIGTERM)

    # Then the running tasks finish, both children exit, and so does the supervisor, with 0
    assert server.wait(60) == 0
    assert sorted(_ok_by_pid(project)) == sorted(ids)
    assert not any(_alive(pid) for pid in children)


def test_children_stop_when_the_supervisor_is_killed(project: Project) -> None:
    project.plugin("pids.py", PID_PLUGIN)
    project.pipeline("orphans", "handler: test.pid_ok\n")
    server = project.serve("--processes", "2")
    server.wait_ready()
    children = wait_for(lambda: len(_children(server)) == 2 and _children(server), message="two children")
    server.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "children outlived their supervisor"


def test_processes_must_be_a_small_number_or_auto(project: Project) -> None:
    project.pipeline("any", "handler: builtin.noop\n")
    result = project.buraq("serve", "pipelines", "--processes", "lots", "--listen", "off")
    assert result.returncode == 1
    assert "--processes wants a number from 1 to 256 or 'auto', got 'lots'" in result.stderr


def test_burst_with_processes_exits_when_everything_is_done(project: Project) -> None:
    project.plugin("pids.py", PID_PLUGIN)
    name = project.pipeline("batch", "handler: test.pid_ok\npool: 2\n")
    ids = project.buraq("enqueue", name, input="{}\n" * 40).stdout.split()
    result = project.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--processes", "2", "--burst",
                           "--listen", "off")
    assert result.returncode == 0, result.stderr
    assert sorted(_ok_by_pid(project)) == sorted(ids)


def test_children_never_supervise_and_never_show_the_redis_url(project: Project) -> None:
    # Given BURAQ_PROCESSES=2 in the environment (children inherit it) and a password in the Redis URL
    project.plugin("pids.py", PID_PLUGIN)
    project.pipeline("env", "handler: test.pid_ok\n")
    url = project.redis_url.replace("redis://", "redis://default:sekrit-pw@", 1) if project.redis_url.startswith(
        "redis://") and "@" not in project.redis_url else project.redis_url
    server = project.serve(env=project.env(BURAQ_PROCESSES="2", REDIS_URL=url))
    server.wait_ready()
    children = wait_for(lambda: len(_children(server)) == 2 and _children(server), message="two children")
    time.sleep(1.5)  # long enough for a child that wrongly supervised to have started its own

    # Then there are exactly two workers, none with children of its own, and no argv holds the URL
    assert _children(server) == children
    for pid in children:
        assert not Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert "sekrit-pw" not in Path(f"/proc/{pid}/cmdline").read_text()
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0


def test_ctrl_c_to_the_whole_process_group_drains_once(project: Project) -> None:
    # Given `serve --processes 2` started as a terminal would (its own process group), running 1 s tasks
    project.plugin("pids.py", PID_PLUGIN)
    name = project.pipeline("ctrlc", "handler: test.pid_ok\npool: 2\noptions: {seconds: 1}\n")
    log = open(project.root / "ctrlc.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "buraq", "serve", "pipelines", "--plugins-dir", "plugins",
                                "--listen", "off", "--processes", "2"], cwd=project.root, env=project.env(),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server = Server(process, 0, Path(log.name))
        wait_for(lambda: server.output().count("serving 1 pipeline(s)") == 2, message="two children serving")
        ids = project.buraq("enqueue", name, input="{}\n" * 4).stdout.split()
        wait_for(lambda: len(project.recorded("start")) == 4, message="four tasks running")

        # When Ctrl-C reaches the whole foreground process group
        os.killpg(process.pid, signal.SIGINT)

        # Then the children drain (their running tasks finish) instead of exiting at once with 130
        assert process.wait(60) == 0, server.output()
        assert sorted(_ok_by_pid(project)) == sorted(ids)
        assert "exiting now" not in server.output()
    finally:
        if process.poll() is None:
            process.kill()
