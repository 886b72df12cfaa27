"""Real parts for the http.request tests: an HTTP server on 127.0.0.1, Redis, and `buraq serve --burst`.

Imported by the test modules that use them rather than kept in a conftest.py: pytest loads every
conftest.py of the test paths as the one module ``conftest`` before collecting, so a second one
would shadow the main suite's (whose tests do ``from conftest import Project``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis as redis_sync

from buraq.embedded import EmbeddedRedis


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """What the test server has received; ``url(path)`` builds a URL to it."""

    port: int
    seen: list[Seen] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # /flaky: task id -> 503s sent so far

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _make_handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Routes: /echo, /text, /empty, /status/CODE, /flaky/N, /slow/SECONDS, /redirect."""

        protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, kind: str = "text/plain", extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            endpoint.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[0] == "echo":
                answer = {"method": self.command, "json": json.loads(body) if body else None,
                          "port": self.client_address[1]}
                self._reply(200, json.dumps(answer).encode(), "application/json; charset=utf-8")
            elif parts[0] == "text":
                self._reply(200, "plain ✓".encode(), "text/plain; charset=utf-8")
            elif parts[0] == "empty":
                self.send_response(204)
                self.end_headers()
            elif parts[0] == "status":
                self._reply(int(parts[1]), b"  nope:\n  " + b"x" * 1000, extra={"Retry-After": "7"})
            elif parts[0] == "flaky":
                task_id = self.headers.get("Buraq-Task-Id", "")
                sent = endpoint.failures.get(task_id, 0)
                if sent < int(parts[1]):
                    endpoint.failures[task_id] = sent + 1
                    self._reply(503, b"busy")
                else:
                    self._reply(200, b'{"ok": true}', "application/json")
            elif parts[0] == "slow":
                time.sleep(float(parts[1]))
                self._reply(200, b"late")
            elif parts[0] == "redirect":
                self._reply(302, b"", extra={"Location": "/echo"})
            else:
                self._reply(404, b"no such route")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _route

    return Handler


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    found = Endpoint(port=0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(found))
    server.daemon_threads = True
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis at REDIS_URL when it answers, else buraq's embedded server (as the main suite does)."""
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


def unique(base: str) -> str:
    """A pipeline name no other test run uses."""
    return f"{base}-{uuid.uuid4().hex[:8]}"


def buraq(root: Path, redis_url: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed buraq CLI in ``root`` (its pipelines/ folder), against ``redis_url``."""
    env = {**os.environ, "REDIS_URL": redis_url, "BURAQ_HOME": str(root / ".buraq"), "PYTHONUNBUFFERED": "1"}
    env.pop("BURAQ_REDIS_URL", None)
    env.pop("BURAQ_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "buraq", *args], cwd=root, env=env, input=input,
                          capture_output=True, text=True, timeout=120)
