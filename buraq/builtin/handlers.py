"""Handlers every installation has, useful for smoke tests, benchmarks and wiring."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from buraq.failures import Reject
from buraq.hookspecs import hookimpl
from buraq.task import Task

log = logging.getLogger("buraq.builtin")


async def noop(task: Task) -> None:
    """Do nothing: measures the engine itself."""


async def log_task(task: Task) -> None:
    """Log the task id and attempt; the payload only when the pipeline sets ``options.payload: true``."""
    if task.options.get("payload"):
        log.info("task %s (%s, attempt %d): %r", task.id, task.pipeline, task.attempt, task.payload)
    else:
        log.info("task %s (%s, attempt %d)", task.id, task.pipeline, task.attempt)


async def sleep(task: Task) -> Any:
    """Sleep for ``payload.seconds`` (or ``options.seconds``): a stand-in for slow I/O."""
    payload = task.payload if isinstance(task.payload, dict) else {}
    seconds = float(payload.get("seconds", task.options.get("seconds", 1.0)))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


async def merge(task: Task) -> dict[str, Any]:
    """Return the payload (a mapping) with ``options.fields`` merged over it: a chain stage that tags or enriches."""
    if not isinstance(task.payload, dict):
        raise Reject(f"builtin.merge needs a mapping payload, got {type(task.payload).__name__}")
    fields = task.options.get("fields", {})
    if not isinstance(fields, dict):
        raise Reject("builtin.merge: options.fields must be a mapping")
    return {**task.payload, **fields}


def _options(properties: dict[str, Any]) -> dict[str, Any]:
    """An options schema: these keys only, so a misspelt option is a validate error, not a silent default."""
    return {"type": "object", "properties": properties, "additionalProperties": False}


@hookimpl(trylast=True)
def register_handlers(register: Callable[..., None]) -> None:
    register("builtin.noop", noop)  # ignores its options: any are fine
    register("builtin.log", log_task, options_schema=_options({"payload": {"type": "boolean"}}))
    register("builtin.sleep", sleep, options_schema=_options({"seconds": {"type": "number", "minimum": 0}}))
    register("builtin.merge", merge, options_schema=_options({"fields": {"type": "object"}}))
