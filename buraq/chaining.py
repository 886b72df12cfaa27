"""Chaining: a handler's return value becomes a new task on each of its pipeline's `output:` targets.

The forward comes before the acknowledgement, and each forward is an
``enqueue_once`` keyed by the parent (``SOURCE/TASK_ID``) in the target's own
hash slot. A worker that dies between forward and ack runs the task again,
and the second forward finds the key and adds nothing. That works on Redis
Cluster, where a target pipeline's keys live in another slot than the source's
and no single script could touch both. See docs/decisions/0007-chaining-forward-then-ack.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from buraq import connection, keys, outputs, streams, wire
from buraq.backoff import pause_after
from buraq.builtin.codecs import JsonCodec
from buraq.config import Pipeline, find_pipeline, payload_checker
from buraq.task import Task

log = logging.getLogger("buraq.chaining")

# Tries per forward before the task counts as failed (and is retried by the pipeline's policy).
FORWARD_TRIES = 4


@dataclass(frozen=True)
class Target:
    """One `output:` target, ready to receive: where its tasks go and how they are encoded."""

    name: str
    stream: str
    window: float
    encode: Callable[[Any], bytes]
    forward_key: Callable[[str], str]


class Chain:
    """Forwards one pipeline's results to its targets."""

    def __init__(self, source: Pipeline, targets: Sequence[Target], redis: aioredis.Redis) -> None:
        self._source = source
        self._targets = targets
        self._redis = redis

    @classmethod
    def build(cls, source: Pipeline, pipelines: Sequence[Pipeline], codec: Callable[[str], Any],
              redis: aioredis.Redis) -> Chain | None:
        """The chain for ``source``, or None when it has no `output:`."""
        if not source.output:
            return None
        return cls(source, [_target(source, name, pipelines, codec) for name in source.output], redis)

    async def forward(self, task: Task, result: Any) -> list[str]:
        """Enqueue ``result`` to every target (none for None); return the child task ids.

        Everything is encoded before anything is sent, so a result one target refuses forwards to none.
        """
        if result is None:
            return []
        parent = f"{self._source.name}/{task.id}"
        encoded = [(target, target.encode(result)) for target in self._targets]
        ids = []
        for target, data in encoded:
            fields = {wire.PAYLOAD: data, wire.PARENT: parent.encode()}
            ids.append(await self._send(target, target.forward_key(parent), fields))
        return ids

    async def _send(self, target: Target, dedup_key: str, fields: dict[bytes, bytes]) -> str:
        for attempt in range(1, FORWARD_TRIES + 1):
            try:
                added, child = await streams.enqueue_once(self._redis, target.stream, dedup_key, target.window, fields)
            except connection.REDIS_TROUBLE as exc:
                if attempt == FORWARD_TRIES:
                    raise
                log.warning("%s: forward to %s failed (%s); trying again", self._source.name, target.name, exc)
                await asyncio.sleep(pause_after(attempt, 0.1, 2.0))
                continue
            if not added:
                log.info("%s: %s was already forwarded to %s as %s (a redelivery); not adding it again",
                         self._source.name, fields[wire.PARENT].decode(), target.name, child)
            return child
        raise AssertionError("unreachable")


def _target(source: Pipeline, name: str, pipelines: Sequence[Pipeline], codec: Callable[[str], Any]) -> Target:
    if outputs.is_raw_stream(name):
        json = JsonCodec()
        return Target(name=name, stream=name, window=source.dedup_window,
                      encode=lambda value: wire.encode_payload(name, json, source.max_payload, None, value),
                      forward_key=lambda parent: keys.sibling(name, f"forwarded:{parent}"))
    pipeline = find_pipeline(pipelines, name)
    target_codec, check = codec(pipeline.codec), payload_checker(pipeline)
    return Target(name=name, stream=pipeline.stream, window=pipeline.dedup_window,
                  encode=lambda value: wire.encode_payload(name, target_codec, pipeline.max_payload, check, value),
                  forward_key=pipeline.forward_key)
