"""Real parts for the shell.run tests: Redis, `buraq serve --burst`, and a check that a process is gone.

Imported by the test modules that use them rather than kept in a conftest.py: pytest loads every
conftest.py of the test paths as the one module ``conftest`` before collecting, so a second one
would shadow the main suite's (whose tests do ``from conftest import Project``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from buraq.embedded import EmbeddedRedis


def gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (exited, or a zombie waiting for its reaper)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


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
