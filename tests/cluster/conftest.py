"""A real three-master Redis Cluster for the session, built from the redis-server binary.

It overrides the ``redis_url`` and ``redis`` fixtures of tests/conftest.py, so the
``project`` fixture, ``buraq serve`` subprocesses and the fault helpers run against the
cluster unchanged. The servers are stopped by the PIDs this fixture started.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from redis.cluster import RedisCluster

# The Jepsen-style oracle and the event readers of the fault tests are reused as they are.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))

MASTERS = 3


class LocalCluster:
    """Three cluster-enabled redis-server processes on free ports, joined with redis-cli."""

    def __init__(self, root: Path, server: str, cli: str) -> None:
        self.root = root
        self.server = server
        self.cli = cli
        self.ports = [_node_port() for _ in range(MASTERS)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A plain redis:// URL of one node: buraq must find out on its own that it is a cluster."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for port in self.ports:
            node = self.root / str(port)
            node.mkdir()
            self.processes.append(subprocess.Popen(
                [self.server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node / "nodes.conf"), "--dir", str(node), "--save", "",
                 "--appendonly", "no", "--logfile", str(node / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            _wait(lambda: redis_sync.Redis(port=port, socket_timeout=1).ping(), f"node {port} to answer")
        subprocess.run([self.cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        for port in self.ports:
            _wait(lambda: redis_sync.Redis(port=port).cluster("info")["cluster_state"] == "ok",
                  f"cluster_state:ok on {port}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _node_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too, so both stay under 65536."""
    while True:
        port = random.randrange(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def _wait(condition, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis_sync.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    # BURAQ_CLUSTER_SERVER runs the same tests on another server, e.g. valkey-server.
    server = os.environ.get("BURAQ_CLUSTER_SERVER") or shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("the cluster tests need the redis-server and redis-cli binaries on PATH (CI has them)")
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), server, cli)
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def redis_url(cluster: LocalCluster) -> str:
    return cluster.url


@pytest.fixture
def redis(cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    yield client
    client.close()
