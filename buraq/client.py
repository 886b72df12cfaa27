"""Producing tasks from Python: ``AsyncClient`` for asyncio code, ``Client`` for everything else.

A client finds a pipeline's stream by reading the pipeline files (``pipelines/``
of the working directory unless told otherwise), checks the payload size before
anything reaches Redis, and returns the task id the handler will see.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from datetime import datetime
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from buraq import connection, streams, wire
from buraq.builtin.codecs import JsonCodec
from buraq.config import Pipeline, find_pipeline, load_pipelines, payload_checker
from buraq.embedded import EmbeddedRedis
from buraq.errors import TaskRejected


class AsyncClient:
    """Enqueue tasks from asyncio code; use as ``async with AsyncClient() as client``."""

    def __init__(self, redis_url: str | None = None, pipelines: str | os.PathLike[str] | list[Pipeline] = "pipelines",
                 plugins_dir: str | os.PathLike[str] | None = "plugins"):
        self._url = connection.configured_url(redis_url)
        self._pipeline_source = pipelines
        self._pipelines: list[Pipeline] | None = pipelines if isinstance(pipelines, list) else None
        self._embedded: contextlib.ExitStack | None = None
        self._redis: aioredis.Redis | None = None
        self._codecs: dict[str, Any] = {"json": JsonCodec()}
        self._plugins_dir = plugins_dir
        self._checkers: dict[str, Any] = {}

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def enqueue(self, pipeline: str, payload: Any, *, delay: float | None = None,
                      at: datetime | float | None = None, key: str | None = None) -> str:
        """Add one task; return its id, which the handler sees as ``task.id``.

        With ``delay`` (seconds, measured by Redis's clock) or ``at`` (an aware datetime, or
        seconds since the epoch) the task waits in the pipeline's delayed set and never starts
        before then. Its id is then generated here; otherwise it is the stream entry id.
        With ``key``, a second enqueue of the same key within the pipeline's ``dedup.window``
        adds nothing and returns the first task's id: safe to repeat after a timeout.
        """
        target = self.pipeline(pipeline)
        at_seconds = _check_when(delay, at)
        _check_keys([key], delay, at)
        data = self._encode(target, payload)
        if key is not None:
            _, task_id = await streams.enqueue_once(await self._connection(), target.stream, target.dedup_key(key),
                                                    target.dedup_window, wire.first_delivery_fields(data))
            return task_id
        if delay is None and at is None:
            return await streams.add(await self._connection(), target.stream, wire.first_delivery_fields(data))
        return await self._park(target, data, delay, at_seconds)

    async def _park(self, target: Pipeline, data: bytes, delay: float | None, at: float | None) -> str:
        task_id = f"d-{uuid.uuid4().hex}"
        await streams.add_delayed(await self._connection(), target, wire.first_delivery_fields(data, task_id),
                                  delay=delay, at=at)
        return task_id

    async def enqueue_many(self, pipeline: str, payloads: Iterable[Any], *, delay: float | None = None,
                           at: datetime | float | None = None, keys: Sequence[str | None] | None = None) -> list[str]:
        """Add many tasks (in batches, one round trip each); return their ids in order. All are checked before any is sent.

        ``keys``, one per payload (None for a payload without one), de-duplicates as ``enqueue(key=)`` does.
        """
        target = self.pipeline(pipeline)
        at_seconds = _check_when(delay, at)
        encoded = [self._encode(target, payload) for payload in payloads]
        if keys is not None:
            _check_keys(keys, delay, at)
            if len(keys) != len(encoded):
                raise TaskRejected(f"keys has {len(keys)} items for {len(encoded)} payloads")
            return await self._enqueue_keyed(target, encoded, keys)
        if delay is None and at is None:
            return await streams.add_many(await self._connection(), target.stream,
                                          [wire.first_delivery_fields(data) for data in encoded])
        return [await self._park(target, data, delay, at_seconds) for data in encoded]

    async def _enqueue_keyed(self, target: Pipeline, encoded: list[bytes], keys: Sequence[str | None]) -> list[str]:
        redis = await self._connection()
        plain = [data for data, key in zip(encoded, keys) if key is None]
        plain_ids = iter(await streams.add_many(redis, target.stream, [wire.first_delivery_fields(d) for d in plain]))
        keyed = [(target.dedup_key(key), wire.first_delivery_fields(data))
                 for data, key in zip(encoded, keys) if key is not None]
        keyed_ids = iter(await streams.enqueue_once_many(redis, target.stream, target.dedup_window, keyed))
        return [next(plain_ids) if key is None else next(keyed_ids) for key in keys]

    def pipeline(self, name: str) -> Pipeline:
        """The definition of pipeline ``name`` (loaded once from the pipeline files)."""
        if self._pipelines is None:
            self._pipelines = load_pipelines([self._pipeline_source])  # type: ignore[list-item]
        return find_pipeline(self._pipelines, name)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._embedded is not None:
            self._embedded.close()
            self._embedded = None

    def _codec_for(self, pipeline: Pipeline) -> Any:
        if pipeline.codec not in self._codecs:
            from buraq.plugins import load_plugins  # only pipelines with a plugin codec pay for loading plugins

            self._codecs[pipeline.codec] = load_plugins(self._plugins_dir).codec(pipeline.codec)
        return self._codecs[pipeline.codec]

    def _encode(self, pipeline: Pipeline, payload: Any) -> bytes:
        if pipeline.name not in self._checkers:
            self._checkers[pipeline.name] = payload_checker(pipeline)
        return wire.encode_payload(pipeline.name, self._codec_for(pipeline), pipeline.max_payload,
                                   self._checkers[pipeline.name], payload)

    async def _connection(self) -> aioredis.Redis:
        if self._redis is None:
            url = self._url
            if url is None:
                self._embedded = contextlib.ExitStack()
                url = self._embedded.enter_context(EmbeddedRedis())
            self._redis = await connection.connect(url, give_up_after=0)
        return self._redis


def _check_when(delay: float | None, at: datetime | float | None) -> float | None:
    """Check delay= / at= before anything is sent; return ``at`` as seconds since the epoch."""
    if delay is not None and at is not None:
        raise TaskRejected("give delay or at, not both")
    if delay is not None and delay < 0:
        raise TaskRejected(f"delay must not be negative (got {delay})")
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise TaskRejected("at= needs a time zone (a naive datetime is ambiguous across hosts)")
        return at.timestamp()
    return None if at is None else float(at)


def _check_keys(keys: Sequence[str | None], delay: float | None, at: datetime | float | None) -> None:
    given = [key for key in keys if key is not None]
    if given and (delay is not None or at is not None):
        raise TaskRejected("key cannot be combined with delay or at (a keyed task is enqueued at once)")
    for key in given:
        if not isinstance(key, str) or not key:
            raise TaskRejected(f"a dedup key is a non-empty string, not {key!r}")


class Client:
    """The synchronous face of AsyncClient, for scripts and web apps that are not asyncio.

    It runs its own private event loop, so it cannot be used from inside a running one
    (use AsyncClient there).
    """

    def __init__(self, redis_url: str | None = None, pipelines: str | os.PathLike[str] | list[Pipeline] = "pipelines",
                 plugins_dir: str | os.PathLike[str] | None = "plugins"):
        self._loop = asyncio.new_event_loop()
        self._client = AsyncClient(redis_url, pipelines, plugins_dir)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def enqueue(self, pipeline: str, payload: Any, *, delay: float | None = None,
                at: datetime | float | None = None, key: str | None = None) -> str:
        return self._loop.run_until_complete(self._client.enqueue(pipeline, payload, delay=delay, at=at, key=key))

    def enqueue_many(self, pipeline: str, payloads: Iterable[Any], *, delay: float | None = None,
                     at: datetime | float | None = None, keys: Sequence[str | None] | None = None) -> list[str]:
        return self._loop.run_until_complete(self._client.enqueue_many(pipeline, payloads, delay=delay, at=at,
                                                                       keys=keys))

    def pipeline(self, name: str) -> Pipeline:
        return self._client.pipeline(name)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()
