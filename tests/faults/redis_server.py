"""A Redis server of the test's own, so a test may kill and restart it (never the shared one)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis as redis_sync

from buraq.embedded import server_binary


class OwnRedis:
    def __init__(self, directory: Path, port: int, appendfsync: str = "always") -> None:
        self.directory = directory
        self.port = port
        self.appendfsync = appendfsync
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        binary = shutil.which("redis-server") or server_binary()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if redis_sync.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis_sync.RedisError:
                time.sleep(0.05)
        raise AssertionError("test Redis did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync beyond what appendfsync already did."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis_sync.Redis:
        return redis_sync.Redis(port=self.port)
