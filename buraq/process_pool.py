"""Run a plain ``def`` handler in child processes, one per slot, so a hung one can be killed.

A thread cannot be stopped from outside; a process can. Each slot owns one child
(started with ``spawn``, so it shares no locks or threads with the event loop),
which loads the same plugins and runs tasks sent to it as JSON over a pipe. On a
timeout the child is killed and replaced; if it dies on its own (segfault,
``os._exit``, the OOM killer), the attempt fails with HandlerProcessDied and the
task is retried or dead-lettered like any failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import traceback
from multiprocessing.connection import Connection
from typing import Any

from buraq.backoff import pause_after
from buraq.lifetime import watch_parent
from buraq.failures import HandlerError, HandlerProcessDied, TaskTimeout, is_rejection
from buraq.task import Task

log = logging.getLogger("buraq.process_pool")
_CONTEXT = multiprocessing.get_context("spawn")


class _Child:
    def __init__(self, handler_name: str, plugins_dir: str | None) -> None:
        parent_end, child_end = _CONTEXT.Pipe()
        self.connection: Connection = parent_end
        self.process = _CONTEXT.Process(target=_child_main, args=(child_end, handler_name, plugins_dir, os.getpid()),
                                        name=f"buraq-handler:{handler_name}", daemon=True)
        self.process.start()
        child_end.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.connection.close()


class ProcessPool:
    """``size`` children for one handler; ``run`` sends a task to a free one and awaits its answer."""

    def __init__(self, handler_name: str, plugins_dir: str | None, size: int) -> None:
        self._handler_name = handler_name
        self._plugins_dir = plugins_dir
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._all: set[_Child] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._failed_starts = 0
        for _ in range(size):
            self._add_child()

    def _add_child(self, pause: float = 0.0) -> None:
        """Start a child; it joins the idle queue only once it says its plugins are loaded, so
        start-up time never counts against a task's timeout."""
        starting = asyncio.get_running_loop().create_task(self._start_child(pause))
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)

    async def _start_child(self, pause: float) -> None:
        await asyncio.sleep(pause)
        child = _Child(self._handler_name, self._plugins_dir)
        self._all.add(child)
        try:
            await _receive(child.connection)  # {"ready": true}
        except (EOFError, OSError, ValueError):
            self._all.discard(child)
            child.kill()
            backoff = pause_after(self._failed_starts, 0.5, 30.0)
            self._failed_starts += 1
            log.error("a handler process for %s died while starting (exit code %s); another in %.1fs",
                      self._handler_name, child.process.exitcode, backoff)
            self._add_child(backoff)
            return
        self._failed_starts = 0
        self._idle.put_nowait(child)

    async def _idle_child(self) -> _Child:
        while True:
            child = await self._idle.get()
            if child.process.is_alive():
                return child
            self._all.discard(child)  # died while idle: replace it without failing anybody's task
            child.kill()
            self._add_child()

    async def run(self, task: Task, timeout: float | None) -> Any:
        # default=str: options from YAML may hold dates; the handler sees them as ISO strings.
        message = json.dumps(dataclasses.asdict(task), default=str).encode()
        child = await self._idle_child()
        healthy = False
        try:
            child.connection.send_bytes(message)
            reply = await asyncio.wait_for(_receive(child.connection), timeout)
            healthy = True
        except asyncio.TimeoutError:
            raise TaskTimeout(f"task exceeded its timeout of {timeout:g}s (its process was killed)") from None
        except (EOFError, OSError):
            child.process.join(1)
            raise HandlerProcessDied(f"the handler's process died (exit code {child.process.exitcode})") from None
        finally:
            if healthy:
                self._idle.put_nowait(child)
            else:
                self._all.discard(child)
                child.kill()
                self._add_child()
        if "error" in reply:
            raise HandlerError(reply["error"], reply["message"], reply["traceback"], reply.get("rejected", False))
        return reply.get("result")

    def close(self) -> None:
        for starting in self._starting:
            starting.cancel()
        for child in self._all:
            child.kill()
        self._all.clear()


async def _receive(connection: Connection) -> dict[str, Any]:
    """Wait for the child's answer without blocking the event loop."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    fd = connection.fileno()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    return json.loads(connection.recv_bytes())


def _child_main(connection: Connection, handler_name: str, plugins_dir: str | None, parent: int) -> None:
    """The child: load plugins once, then run tasks until the pipe closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when work stops
    watch_parent(parent)  # die with the worker that started us, rather than run on as an orphan
    from buraq.plugins import load_plugins

    handler = load_plugins(plugins_dir).handler(handler_name).function
    connection.send_bytes(b'{"ready": true}')
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return
        task = Task(**json.loads(message))
        try:
            result = handler(task)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            reply = json.dumps({"result": result}, default=repr)
        except Exception as exc:
            reply = json.dumps({"error": type(exc).__name__, "message": str(exc),
                                "traceback": "".join(traceback.format_exception(exc)),
                                "rejected": is_rejection(exc)})
        connection.send_bytes(reply.encode())
