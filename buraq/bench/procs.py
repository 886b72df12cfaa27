"""The processes a benchmark runs: `buraq serve` subprocesses, and what /proc says about their memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"


def start_serve(folder: Path, url: str, consumer: str, burst: bool, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One `buraq serve` of the bench pipeline folder, with the bench handlers, no metrics port."""
    command = [sys.executable, "-m", "buraq", "--log-level", "warning", "serve", str(folder),
               "--plugins-dir", str(PLUGINS_DIR), "--redis-url", url, "--listen", "off", "--consumer", consumer]
    if burst:
        command.append("--burst")
    return subprocess.Popen(command, env=dict(os.environ, **env), stdin=subprocess.DEVNULL)


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> list[int]:
    """SIGTERM each (a graceful drain), wait, SIGKILL any that hang; return the exit codes."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


def memory_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a live process in MiB; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    if len(values) < 2:
        return None  # a zombie has no memory lines
    return round(values["VmRSS"], 1), round(values["VmHWM"], 1)
