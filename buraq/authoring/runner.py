"""Run test cases through the real engine: real handlers, a real Redis, real retries and dead letters.

Each case runs as its own copy of its pipeline, on streams named for this run
only (``buraq-test:{RUN-N}:tasks``), so a run never touches a real pipeline's
data, and cases never see each other's tasks. Retries wait no time (attempts are
kept), schedules are left out, and every handler runs in this process (threads
for plain ``def``, even with ``executor: process``) so that a thin wrapper can
record what it returned. The engine itself is ``runtime.serve`` in burst mode.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from buraq import connection, keys, streams, wire
from buraq.authoring.cases import Case
from buraq.config import Backoff, Pipeline, RetryPolicy
from buraq.plugins import Handler, Registry
from buraq.runtime import ServeOptions, serve

NO_WAIT = Backoff(initial=0.0, multiplier=1.0, max=0.0, jitter=0.0)
# Pipelines per serve() call. Each worker may hold about five connections at once (a blocked read,
# heartbeat, promote, reclaim, acks), and redis-py pools at most 100 per client by default.
BATCH = 16


@dataclass(frozen=True)
class Result:
    """What became of one task: ``done`` (with the handler's return value), ``dead``, or ``unfinished``."""

    state: str
    attempts: int | None = None
    output: Any = None
    reason: str | None = None
    error_type: str | None = None
    error: str | None = None


class Recorder:
    """Wraps handlers to keep each task's return value, keyed by task id (unique per run)."""

    def __init__(self) -> None:
        self.returned: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def keep(self, task: Any, value: Any) -> Any:
        with self._lock:
            self.returned[task.id] = (task.attempt, value)
        return value

    def wrap(self, handler: Handler) -> Handler:
        function = handler.function
        if handler.is_async:
            async def run_async(task: Any) -> Any:
                value = await function(task)
                return self.keep(task, await value if inspect.iscoroutine(value) else value)

            return replace(handler, function=run_async)

        def run(task: Any) -> Any:
            value = function(task)
            if inspect.iscoroutine(value):  # a plain def that returns a coroutine: the engine awaits it
                return self._later(task, value)
            return self.keep(task, value)

        return replace(handler, function=run)

    async def _later(self, task: Any, coroutine: Any) -> Any:
        return self.keep(task, await coroutine)


def case_pipeline(pipeline: Pipeline, case: Case, stream: str) -> Pipeline:
    """The pipeline as this case runs it: its own streams, no retry waits, no schedules, handlers in-process,
    and no outputs: a case checks what this stage returns, and must never enqueue into a real pipeline."""
    return replace(pipeline, stream=stream, dlq=keys.default_dlq(stream),
                   retry=RetryPolicy(attempts=pipeline.retry.attempts, backoff=NO_WAIT),
                   options={**pipeline.options, **case.options}, schedule=(), executor="thread", output=())


async def run_cases(cases: list[Case], pipelines: Mapping[str, Pipeline], registry: Registry, redis_url: str,
                    timeout: float) -> list[list[Result]]:
    """Enqueue every case's inputs, serve until all are idle (or ``timeout``), and say what became of each."""
    run = uuid.uuid4().hex[:12]
    variants: dict[tuple[str, str], Pipeline] = {}  # cases with the same pipeline and options share streams
    runs = []
    for case in cases:
        key = (case.pipeline, json.dumps(case.options, sort_keys=True, default=repr))
        if key not in variants:
            variants[key] = case_pipeline(pipelines[case.pipeline], case, f"buraq-test:{{{run}-{len(variants)}}}:tasks")
        runs.append(variants[key])
    ids = [[f"test-{run}-{n}-{i}" for i in range(len(case.inputs))] for n, case in enumerate(cases)]
    recorder = Recorder()
    used = {p.handler for p in runs}
    wrapped = replace(registry, handlers={name: recorder.wrap(h) if name in used else h
                                          for name, h in registry.handlers.items()})
    redis = connection.client(redis_url)
    try:
        unsendable = await _enqueue(redis, runs, cases, ids, registry)
        await _serve_in_batches(list(variants.values()), wrapped, redis_url, f"buraq-test-{run}", timeout)
        dead = await _dead_letters(redis, variants.values())
        return [[unsendable.get(task_id) or _result(task_id, recorder, dead) for task_id in case_ids]
                for case_ids in ids]
    finally:
        await _forget(redis, variants.values())
        await redis.aclose()


async def _serve_in_batches(runs: list[Pipeline], registry: Registry, redis_url: str, consumer: str,
                            timeout: float) -> None:
    """``runtime.serve`` in burst mode, a few pipelines at a time: each worker holds several pooled connections."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    options = ServeOptions(redis_url=redis_url, listen=None, grace=5.0, burst=True, consumer=consumer)
    for start in range(0, len(runs), BATCH):
        left = deadline - loop.time()
        if left <= 0:
            return  # what did not run is reported as unfinished
        try:
            await asyncio.wait_for(serve(runs[start:start + BATCH], registry, options), left)
        except asyncio.TimeoutError:
            return


async def _enqueue(redis: Redis, runs: list[Pipeline], cases: list[Case], ids: list[list[str]],
                   registry: Registry) -> dict[str, Result]:
    """Add each input as the pipeline's codec encodes it; ``payload_schema`` is left to the worker, as in production."""
    unsendable = {}
    for pipeline, case, case_ids in zip(runs, cases, ids):
        codec = registry.codec(pipeline.codec)
        for task_id, payload in zip(case_ids, case.inputs):
            try:
                encoded = codec.encode(payload)
            except Exception as exc:
                unsendable[task_id] = Result("unsendable", error=f"the {pipeline.codec} codec cannot encode it: {exc}")
                continue
            await streams.add(redis, pipeline.stream, wire.first_delivery_fields(encoded, task_id))
    return unsendable


async def _dead_letters(redis: Redis, runs: Iterable[Pipeline]) -> dict[str, dict[str, str]]:
    dead = {}
    for pipeline in runs:
        for _, fields in await streams.read_range(redis, pipeline.dlq, 10_000):
            row = {key.decode(): value.decode("utf-8", "replace") for key, value in fields.items()}
            dead[row.get("id", "")] = row
    return dead


def _result(task_id: str, recorder: Recorder, dead: Mapping[str, Mapping[str, str]]) -> Result:
    if task_id in recorder.returned and task_id not in dead:
        attempt, output = recorder.returned[task_id]
        return Result("done", attempts=attempt, output=output)
    if task_id in dead:
        row = dead[task_id]
        attempts = int(row["attempts"]) if row.get("attempts", "").isdigit() else None
        return Result("dead", attempts=attempts, reason=row.get("reason"), error_type=row.get("error_type"),
                      error=row.get("error"))
    return Result("unfinished")


async def _forget(redis: Redis, runs: Iterable[Pipeline]) -> None:
    """Delete every key this run made, so a shared Redis keeps nothing of it."""
    keys = [key for p in runs for key in (p.stream, p.dlq, p.delayed, p.consumers, p.schedules)]
    if keys:
        await redis.delete(*keys)

