"""How a handler is called: awaited, in a thread, or in a child process; always under its timeout."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Any

from buraq.config import Pipeline
from buraq.failures import TaskTimeout
from buraq.plugins import Handler
from buraq.process_pool import ProcessPool
from buraq.task import Task


class HandlerRunner:
    """Calls one pipeline's handler the way its kind and ``executor`` setting ask for.

    ``async def`` handlers are awaited and cancelled at the timeout. ``def`` handlers run
    in a thread (a timeout fails the task, but the thread runs on: Python cannot stop it)
    or, with ``executor: process``, in a child process that is killed at the timeout.
    """

    def __init__(self, pipeline: Pipeline, handler: Handler, threads: Executor | None,
                 processes: ProcessPool | None) -> None:
        self._pipeline = pipeline
        self._handler = handler
        self._threads = threads
        self._processes = processes

    async def __call__(self, task: Task) -> Any:
        timeout = self._pipeline.timeout
        if self._processes is not None:
            return await self._processes.run(task, timeout)
        if self._handler.is_async:
            call = self._handler.function(task)
        else:
            call = asyncio.get_running_loop().run_in_executor(self._threads, self._handler.function, task)
        if timeout is None:
            result = await call
        else:
            # asyncio.timeout, not wait_for: a TimeoutError the handler raises itself (a socket timeout)
            # is the same class since Python 3.11 and must stay the handler's own failure; and wait_for
            # wraps every call in one more Task (a per-task cost).
            scope = asyncio.timeout(timeout)
            try:
                async with scope:
                    result = await call
            except TimeoutError:
                if scope.expired():
                    raise TaskTimeout(f"task exceeded its timeout of {timeout:g}s") from None
                raise
        if asyncio.iscoroutine(result):
            result = await result
        return result
