"""With no Redis configured, buraq runs its own server, and queued tasks survive between commands."""

from __future__ import annotations

import os
import signal
import subprocess

from conftest import Project, free_port, wait_for


def _no_redis_env(project: Project) -> dict[str, str]:
    env = project.env()
    for name in ("REDIS_URL", "BURAQ_REDIS_URL"):
        env.pop(name, None)
    return env


def test_enqueue_before_serve_then_processed_on_the_embedded_server(recorder: Project) -> None:
    env = _no_redis_env(recorder)
    name = recorder.pipeline("local", "handler: test.ok\n")

    # Given tasks enqueued while no server runs (each command starts and stops its own)
    first = recorder.buraq("enqueue", name, '{"n": 1}', env=env)
    second = recorder.buraq("enqueue", name, '{"n": 2}', env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert (recorder.root / ".buraq" / "redis").is_dir()
    assert not (recorder.root / ".buraq" / "redis.pid").exists(), "the last command out stops the server"

    # When buraq serve runs later, on the same folder
    served = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off", env=env)

    # Then both tasks are processed
    assert served.returncode == 0, served.stderr
    ids = {first.stdout.strip(), second.stdout.strip()}
    assert {line.split()[0] for line in recorder.recorded("ok")} == ids


def test_enqueue_while_serving_shares_the_running_embedded_server(recorder: Project) -> None:
    env = _no_redis_env(recorder)
    name = recorder.pipeline("shared", "handler: test.ok\n")
    server = recorder.serve(env=env)
    server.wait_ready()
    pid_file = recorder.root / ".buraq" / "redis.pid"
    server_pid = int(pid_file.read_text())
    task_id = recorder.buraq("enqueue", name, '{"n": 1}', env=env).stdout.strip()
    wait_for(lambda: recorder.recorded("ok"), message="task processed")
    assert recorder.recorded("ok")[0].split()[0] == task_id
    # The enqueue command left the server running for buraq serve
    os.kill(server_pid, 0)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    wait_for(lambda: not pid_file.exists(), timeout=10, message="embedded server stopped")


def test_redis_url_password_never_appears_in_output(recorder: Project) -> None:
    name = recorder.pipeline("secret", "handler: test.ok\n")
    port = free_port()  # nothing listens here
    env = recorder.env(REDIS_URL=f"redis://admin:hunter2@127.0.0.1:{port}/0")
    process = subprocess.Popen(["python", "-m", "buraq", "serve", "pipelines", "--plugins-dir", "plugins",
                                "--listen", "off"], cwd=recorder.root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = ""
        while "attempt 2" not in output:
            line = process.stdout.readline()
            assert line, output
            output += line
    finally:
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGKILL) if process.wait(10) is None else None
    assert "hunter2" not in output
    assert "admin:***@" in output
    enqueue = recorder.buraq("enqueue", name, "{}", env=env, timeout=60)
    assert enqueue.returncode == 1
    assert "cannot reach Redis at redis://admin:***@127.0.0.1" in enqueue.stderr
    assert "hunter2" not in enqueue.stdout + enqueue.stderr
