"""Shared fixtures: a real Redis for every test, and real `buraq` subprocesses.

Redis is the one at ``REDIS_URL`` when that is set and answers; otherwise an
embedded server started once for the session. Each test gets its own project
folder and unique pipeline names, so tests never see each other's streams.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from buraq.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        try:
            redis_sync.Redis.from_url(url, socket_connect_timeout=2).ping()
            yield url
            return
        except redis_sync.RedisError:
            pass
    with EmbeddedRedis(tmp_path_factory.mktemp("embedded")) as embedded_url:
        yield embedded_url


@pytest.fixture
def redis(redis_url: str) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(redis_url)
    yield client
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Project:
    """A throwaway buraq project: pipelines/, plugins/ and a place for handlers to record what they did."""

    def __init__(self, root: Path, redis_url: str) -> None:
        self.root = root
        self.redis_url = redis_url
        self.suffix = uuid.uuid4().hex[:8]
        self.pipelines = root / "pipelines"
        self.plugins = root / "plugins"
        self.pipelines.mkdir()
        self.plugins.mkdir()
        self.records = root / "records"
        self.records.mkdir()

    def name(self, base: str) -> str:
        """A pipeline name unique to this test run."""
        return f"{base}-{self.suffix}"

    def pipeline(self, base: str, body: str) -> str:
        name = self.name(base)
        (self.pipelines / f"{base}.yaml").write_text(f"name: {name}\n" + textwrap.dedent(body))
        return name

    def plugin(self, filename: str, source: str) -> Path:
        path = self.plugins / filename
        path.write_text(textwrap.dedent(source))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(REDIS_URL=self.redis_url, BURAQ_RECORDS=str(self.records), PYTHONUNBUFFERED="1",
                   BURAQ_HOME=str(self.root / ".buraq"))
        env.pop("BURAQ_REDIS_URL", None)
        env.update(extra)
        return env

    def buraq(self, *args: str, input: str | None = None, timeout: float = 120,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "buraq", *args], cwd=self.root, env=env or self.env(),
                              input=input, capture_output=True, text=True, timeout=timeout)

    def serve(self, *args: str, env: dict[str, str] | None = None) -> "Server":
        port = free_port()
        log = open(self.root / f"serve-{port}.log", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "buraq", "serve", "pipelines", "--plugins-dir", "plugins",
             "--listen", f"127.0.0.1:{port}", "--grace", "30s", *args],
            cwd=self.root, env=env or self.env(), stdout=log, stderr=subprocess.STDOUT)
        return Server(process, port, Path(log.name))

    def recorded(self, kind: str) -> list[str]:
        """Lines handlers appended to records/<kind> (see the record() helper in test plugins)."""
        path = self.records / kind
        return path.read_text().splitlines() if path.exists() else []


class Server:
    """A running `buraq serve` subprocess."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return response.read().decode()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"buraq serve exited early:\n{self.output()}")
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"buraq serve did not start:\n{self.output()}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> Iterator[Project]:
    proj = Project(tmp_path, redis_url)
    servers: list[Server] = []
    original = proj.serve

    def tracked_serve(*args: str, env: dict[str, str] | None = None) -> Server:
        server = original(*args, env=env)
        servers.append(server)
        return server

    proj.serve = tracked_serve  # type: ignore[method-assign]
    yield proj
    for server in servers:
        server.kill()


def wait_for(condition, timeout: float = 30, interval: float = 0.05, message: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it returns a truthy value; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# A plugin file tests can drop into plugins/: handlers that record what they did
# into $BURAQ_RECORDS/<kind>, one line per call, so tests can check each task id.
RECORDER_PLUGIN = '''
import asyncio, os, time
import buraq

def record(kind, *parts):
    line = " ".join(str(p) for p in parts)
    with open(os.path.join(os.environ["BURAQ_RECORDS"], kind), "a") as f:
        f.write(line + "\\n")

async def ok(task):
    record("ok", task.id, task.attempt, f"{time.time():.4f}")

def sync_ok(task):
    record("ok", task.id, task.attempt, f"{time.time():.4f}")

async def always_fail(task):
    record("fail", task.id, task.attempt, f"{time.time():.4f}")
    raise RuntimeError(f"boom on attempt {task.attempt}")

def reject(task):
    record("reject", task.id, task.attempt)
    raise buraq.Reject(f"order {task.payload.get('n')} can never succeed")

async def fail_twice(task):
    record("run", task.id, task.attempt, f"{time.time():.4f}")
    if task.attempt <= 2:
        raise ValueError("not yet")
    record("ok", task.id, task.attempt)

async def own_timeout(task):
    raise TimeoutError("socket read timed out")

async def slow(task):
    record("start", task.id)
    await asyncio.sleep(float(task.options.get("seconds", 2)))
    record("ok", task.id, task.attempt)

@buraq.hookimpl
def register_handlers(register):
    register("test.ok", ok)
    register("test.sync_ok", sync_ok)
    register("test.always_fail", always_fail)
    register("test.fail_twice", fail_twice)
    register("test.reject", reject)
    register("test.slow", slow)
    register("test.own_timeout", own_timeout)
'''


@pytest.fixture
def recorder(project: Project) -> Project:
    """The project with the recording test handlers installed as a local plugin."""
    project.plugin("recorder.py", RECORDER_PLUGIN)
    return project
