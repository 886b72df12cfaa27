"""Run one command as an asyncio subprocess in its own process group, and always clean up after it.

The command gets a new session (so a new process group): on a timeout, an output overflow, or
a cancellation (the pipeline's timeout, a hard stop) the whole group is killed with SIGKILL,
grandchildren included, rather than leaving a shell's children running. stdout is kept up to a
limit and stderr only as a tail, so a chatty command cannot exhaust the worker's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field

CHUNK = 64 * 1024
STDERR_TAIL = 4096


class OutputTooLarge(Exception):
    """The command wrote more to stdout than ``max_output`` allows."""


@dataclass
class Capture:
    """What the command wrote so far; readable after a kill, when the readers were cancelled."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr_tail: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr_tail: bytes


async def run(argv: list[str], stdin: bytes | None, env: dict[str, str], cwd: str | None, timeout: float,
              max_output: int, capture: Capture) -> Finished:
    """Run ``argv`` to its end. Raises TimeoutError or OutputTooLarge after killing the group;
    raises OSError when the command cannot start (not found, not executable, bad cwd)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
    assert process.stdout is not None and process.stderr is not None
    parts = [asyncio.ensure_future(_read_stdout(process.stdout, capture.stdout, max_output)),
             asyncio.ensure_future(_read_tail(process.stderr, capture.stderr_tail)),
             asyncio.ensure_future(_feed(process.stdin, stdin))]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*parts)
            returncode = await process.wait()
    except BaseException:  # timeout, overflow, or cancelled from outside: nothing of it may outlive the task
        kill_group(process.pid)
        for part in parts:
            part.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(process.wait()), 5)
        raise
    return Finished(returncode, bytes(capture.stdout), bytes(capture.stderr_tail))


def kill_group(pgid: int) -> None:
    """SIGKILL every process in the group (the command is its leader); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _read_stdout(stream: asyncio.StreamReader, into: bytearray, limit: int) -> None:
    while chunk := await stream.read(CHUNK):
        into += chunk
        if len(into) > limit:
            del into[limit:]
            raise OutputTooLarge(f"stdout passed max_output ({limit} bytes)")


async def _read_tail(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(CHUNK):
        into += chunk
        del into[:-STDERR_TAIL]


async def _feed(stream: asyncio.StreamWriter | None, data: bytes | None) -> None:
    """Write stdin and close it; a command that exits without reading all of it is not an error here."""
    if stream is None or data is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()
