"""The worker engine: where a task goes after it is read from its stream.

For each pipeline a PipelineWorker reads only as many entries as it has free
slots, runs each in its own asyncio task, and ends each entry exactly one way:
acknowledged (success), parked in the delayed set (retry) or written to the
dead-letter stream (attempts used up, or undecodable), each atomic with its
acknowledgement. Entries of workers that died come back through Leases.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from buraq import connection, streams, trimmer, wire
from buraq.acks import AckBatcher
from buraq.backoff import pause_after, retry_delay, sleep_unless
from buraq.chaining import Chain
from buraq.config import Pipeline, payload_checker
from buraq.execution import HandlerRunner
from buraq.failures import is_rejection
from buraq.leases import Leases, TakenEntry
from buraq.limits import Admission, DispatchGate
from buraq.task import Task

log = logging.getLogger("buraq.engine")

READ_BLOCK_MS = 1000
# How often each worker looks for due delayed tasks when it knows of none sooner: producers in
# other processes cannot wake it, so this bounds how late a newly delayed task can start.
PROMOTE_POLL = 0.1
# How often a read loop looks again while taken-over entries wait at the gate for limits.
GATE_YIELD = 0.05
# The longest a DLQ entry keeps of an error message and traceback.
MAX_ERROR_TEXT = 8192


class Observers:
    """The registered observers, grouped per event so the hot path loops over bound methods only."""

    EVENTS = ("task_started", "task_succeeded", "task_failed", "task_retried", "task_dead_lettered",
              "tasks_reclaimed", "entry_trimmed")

    def __init__(self, observers: Sequence[Any]) -> None:
        self._by_event: dict[str, list[Callable[..., None]]] = {
            event: [getattr(o, event) for o in observers if callable(getattr(o, event, None))] for event in self.EVENTS
        }

    def emit(self, event: str, *args: Any) -> None:
        for callback in self._by_event[event]:
            try:
                callback(*args)
            except Exception:
                log.exception("observer %r failed on %s", callback, event)


class PipelineWorker:
    """Runs one pipeline's tasks in this process, at most ``pipeline.pool`` at a time."""

    def __init__(self, pipeline: Pipeline, runner: HandlerRunner, codec: Any, redis: aioredis.Redis,
                 consumer: str, observers: Observers, chain: Chain | None = None,
                 gate: DispatchGate | None = None) -> None:
        self.pipeline = pipeline
        self._runner = runner
        self._codec = codec
        self._redis = redis
        self._consumer = consumer
        self._observers = observers
        self._chain = chain  # forwards results to `output:` targets before the ack
        self._waiting_at_gate = 0  # taken-over entries waiting for a permit or rate slot
        self._read_nothing = True  # the last read came back empty (at start: look before taking a slot)
        self._gate = gate  # shared `rate_limit` / `concurrency`, checked before each read
        self._permit_refresher: asyncio.Task[None] | None = None
        self._check_payload = payload_checker(pipeline)
        self._acks = AckBatcher(redis, pipeline)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._retry_scheduled = asyncio.Event()
        self._stopping = asyncio.Event()
        self._delayed_waiting = True
        self._leases = Leases(redis, pipeline, consumer, running=lambda: list(self._running),
                              free_slots=self._free_slots, take_over=self._take_over)
        self._heartbeat: asyncio.Task[None] | None = None
        self.idle = False  # True when the last read found nothing, nothing runs and nothing waits to retry

    @property
    def in_flight(self) -> int:
        return len(self._running)

    @property
    def consumer(self) -> str:
        return self._consumer

    def retarget(self, chain: Chain | None) -> None:
        """Forward to the targets as they are now (a reload may have changed a target's stream or codec)."""
        self._chain = chain

    def stop(self) -> None:
        """Stop reading and taking over entries; running tasks go on (and keep their leases)."""
        self._stopping.set()
        self._slot_freed.set()
        self._retry_scheduled.set()

    async def run(self) -> None:
        """Read and dispatch until stopped: first this consumer's own pending history, then new entries."""
        await streams.ensure_group(self._redis, self.pipeline)
        await self._leases.beat()  # alive before owning anything
        self._heartbeat = asyncio.create_task(self._leases.heartbeat_forever(), name=f"heartbeat:{self.pipeline.name}")
        if self._gate is not None:  # like the heartbeat, it goes on while draining
            self._permit_refresher = asyncio.create_task(self._gate.refresh_forever(), name=f"permits:{self.pipeline.name}")
        promoter = asyncio.create_task(self._promote_loop(), name=f"promote:{self.pipeline.name}")
        reclaimer = asyncio.create_task(self._leases.reclaim_until(self._stopping), name=f"reclaim:{self.pipeline.name}")
        trimming = asyncio.create_task(trimmer.trim_forever(self._redis, self.pipeline, self._stopping),
                                       name=f"trim:{self.pipeline.name}")
        try:
            await self._read_loop(history=True)
            await self._read_loop(history=False)
        finally:
            # Stopping first: a loop whose cancellation a library swallowed still ends at its next check
            # (a cancelled reader otherwise left its promoter polling forever, and shutdown waiting on it).
            self.stop()
            promoter.cancel()  # moving due entries is atomic and idempotent: a lost reply costs nothing
            trimming.cancel()  # so is trimming
            try:  # a reclaim whose reply were lost would count a delivery for nothing: let it finish
                await asyncio.wait_for(asyncio.shield(reclaimer), 5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                reclaimer.cancel()
            await asyncio.gather(promoter, reclaimer, trimming, return_exceptions=True)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for running tasks and their acks; return how many did not finish.

        Acks still unsent when the grace runs out are given up: those entries stay pending
        (and run again), which at-least-once allows; an exit that hangs on a dead Redis does not.
        """
        deadline = asyncio.get_running_loop().time() + grace
        if self._running:
            await asyncio.wait(set(self._running.values()), timeout=grace)
        remaining = max(1.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(self._acks.flush(), remaining)
        except asyncio.TimeoutError:
            log.warning("%s: acknowledgements not flushed in time; those tasks stay pending", self.pipeline.name)
            return len(self._running) + self._acks.unsent
        return len(self._running)

    async def leave(self) -> None:
        """Stop heartbeating and tell the group this consumer is gone, so leftovers are taken over at once."""
        for beating in (self._heartbeat, self._permit_refresher):
            if beating is not None:
                beating.cancel()
                await asyncio.gather(beating, return_exceptions=True)
        try:
            await asyncio.wait_for(self._leases.leave(), 5.0)
        except (*connection.REDIS_TROUBLE, asyncio.TimeoutError) as exc:
            log.warning("%s: could not leave the group cleanly (%s); leftovers wait out the lease",
                        self.pipeline.name, exc)
        await trimmer.trim_once(self._redis, self.pipeline, timeout=1.0)  # what this run finished, before exit

    def _free_slots(self) -> int:
        return 0 if self._stopping.is_set() else self.pipeline.pool - len(self._running)

    async def _read_loop(self, history: bool) -> None:
        """Read new entries, or with ``history`` walk this consumer's own pending ones once, oldest first."""
        failures = 0
        cursor = "0" if history else None
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if self._waiting_at_gate:  # taken-over entries first: a read would hold the permits they wait for
                await sleep_unless(self._stopping, GATE_YIELD)
                continue
            admitted: list[Admission] | None = None
            try:
                # Our own pending entries (history) are read first and wait at the gate one by one, as
                # taken-over ones do. New ones pass the gate before the read, so unread entries stay in the
                # stream; idle, we look first: a blocking read that finds nothing would waste the slot or
                # permit it took (a limit of 1/min would then hold the next task back for a minute).
                if self._gate is not None and not history:
                    if self._read_nothing and not await streams.wait_for_unread(self._redis, self.pipeline,
                                                                                READ_BLOCK_MS):
                        continue
                    admitted = await self._gate.acquire(free, self._stopping)
                    if not admitted:
                        continue
                    free = len(admitted)
                entries = await streams.read(self._redis, self.pipeline, self._consumer, free, READ_BLOCK_MS, cursor)
                counts = await streams.deliveries(self._redis, self.pipeline,
                                                  [entry_id for entry_id, _ in entries]) if history else {}
                failures = 0
            except connection.REDIS_TROUBLE as exc:
                if admitted:
                    await self._gate.release([a.permit for a in admitted])  # type: ignore[union-attr]
                failures += 1
                delay = pause_after(failures, 0.2, 30.0)
                log.warning("%s: read failed (%s); retrying in %.1fs", self.pipeline.name, exc, delay)
                await sleep_unless(self._stopping, delay)
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    await self._recreate_group()
                continue
            if admitted is not None and len(entries) < len(admitted):  # (unused rate slots are not given back)
                await self._gate.release([a.permit for a in admitted[len(entries):]])  # type: ignore[union-attr]
            if history:
                if not entries:
                    return
                cursor = entries[-1][0]
            self._read_nothing = not entries
            self.idle = not entries and not self._running and not self._delayed_waiting
            for index, (entry_id, fields) in enumerate(entries):
                self._dispatch(entry_id, fields, counts.get(entry_id, 1), admitted[index] if admitted else None)

    def _dispatch(self, entry_id: str, fields: dict[bytes, bytes] | None, deliveries: int,
                  admission: Admission | None = None) -> None:
        if entry_id in self._running:  # already running here: the history walk and a reclaim pass can both hand it over
            if self._gate is not None and admission is not None and admission.permit:
                asyncio.create_task(self._gate.release([admission.permit]))  # the permit came with this copy
            return
        if self._gate is None:
            task = asyncio.create_task(self._process(entry_id, fields, deliveries))
        else:
            task = asyncio.create_task(self._gated(entry_id, fields, deliveries, admission))
        self._running[entry_id] = task
        task.add_done_callback(lambda done, key=entry_id: self._finished(key, done))

    def _take_over(self, entries: list[TakenEntry]) -> None:
        # An entry of our own may come back if its heartbeats failed (say, Redis was away):
        # it still runs here, so it is neither started again nor counted as taken over.
        fresh = [entry for entry in entries if entry[0] not in self._running]
        if fresh:
            self._observers.emit("tasks_reclaimed", self.pipeline.name, len(fresh))
        for entry_id, fields, deliveries in fresh:
            self._dispatch(entry_id, fields, deliveries)

    async def _recreate_group(self) -> None:
        """The stream or group vanished (a Redis restart without persistence, a FLUSHALL): make it again."""
        try:
            await streams.ensure_group(self._redis, self.pipeline)
            log.warning("%s: consumer group was missing; created it again", self.pipeline.name)
        except connection.REDIS_TROUBLE as exc:
            log.warning("%s: cannot create the consumer group yet (%s)", self.pipeline.name, exc)

    def _finished(self, entry_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(entry_id) is task:
            del self._running[entry_id]
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: internal error while processing a task", self.pipeline.name, exc_info=task.exception())

    async def _gated(self, entry_id: str, fields: dict[bytes, bytes] | None, deliveries: int,
                     admission: Admission | None) -> None:
        """Process under the shared limits; an entry taken over (None: not read through the gate) waits here."""
        gate = self._gate
        assert gate is not None
        if admission is None:
            self._waiting_at_gate += 1
            try:
                granted = await gate.acquire(1, self._stopping)
            finally:
                self._waiting_at_gate -= 1
            if not granted:
                return  # stopping: it stays pending, and is taken over once this worker has left
            admission = granted[0]
        try:
            await admission.wait_turn()
            await self._process(entry_id, fields, deliveries)
        finally:
            await gate.release([admission.permit])

    async def _process(self, entry_id: str, fields: dict[bytes, bytes] | None, deliveries: int) -> None:
        pipeline = self.pipeline
        if fields is None:  # trimmed or deleted while pending: nothing left to run or to keep
            log.warning("%s: entry %s was deleted from the stream while pending; dropping it", pipeline.name, entry_id)
            self._acks.ack(entry_id)
            self._observers.emit("entry_trimmed", pipeline.name, entry_id)
            return
        try:
            task = wire.decode_entry(entry_id, fields, pipeline.name, self._codec, pipeline.max_payload,
                                     dict(pipeline.options), deliveries, self._check_payload)
        except wire.Undecodable as bad:
            log.warning("%s: entry %s (task %s) is undecodable: %s", pipeline.name, entry_id, bad.task_id, bad)
            await self._dead_letter(entry_id, bad.task_id, bad.raw_payload, bad.reason, deliveries, 0,
                                    "Undecodable", str(bad), "", fields)
            return
        if task.attempt > pipeline.retry.attempts:
            await self._worker_lost(task, fields)
            return
        self._observers.emit("task_started", task)
        started = time.perf_counter()
        try:
            result = await self._runner(task)
            if self._chain is not None:  # forwarded before the ack below: never an ack without the forward
                await self._chain.forward(task, result)
        except Exception as error:
            await self._failed(task, error, time.perf_counter() - started, fields)
        else:
            self._acks.ack(entry_id)
            self._observers.emit("task_succeeded", task, time.perf_counter() - started)
            if wire.SCHEDULE in fields:
                await self._schedule_finished(fields)

    async def _schedule_finished(self, fields: dict[bytes, bytes]) -> None:
        """A schedule's task ended: under `overlap: skip` its next tick may fire now."""
        name = fields.get(wire.SCHEDULE, b"").decode()
        if any(s.name == name and s.overlap == "skip" for s in self.pipeline.schedule):
            task_id = fields.get(wire.TASK_ID, b"").decode()
            await _with_redis_retries(lambda: streams.schedule_finished(self._redis, self.pipeline, name, task_id),
                                      self.pipeline.name)

    async def _worker_lost(self, task: Task, fields: dict[bytes, bytes]) -> None:
        """The task's earlier attempts used up its budget by killing their workers: dead-letter it unrun."""
        message = (f"attempt {task.attempt} would exceed retry.attempts ({self.pipeline.retry.attempts}); "
                   f"{task.crashes} earlier attempt(s) ended with the worker dying (crash, kill or stop)")
        log.warning("%s: task %s: %s", self.pipeline.name, task.id, message)
        await self._dead_letter(task.entry_id, task.id, fields[wire.PAYLOAD], "worker_lost", task.attempt - 1,
                                task.crashes, "WorkerLost", message, "", fields)

    async def _failed(self, task: Task, error: Exception, duration: float, fields: dict[bytes, bytes]) -> None:
        self._observers.emit("task_failed", task, error, duration)
        pipeline = self.pipeline
        error_type = getattr(error, "type_name", type(error).__name__)
        rejected = is_rejection(error)
        if task.attempt < pipeline.retry.attempts and not rejected:
            delay = retry_delay(pipeline.retry.backoff, task.attempt)
            log.info("%s: task %s attempt %d failed (%s: %s); retry in %.2fs", pipeline.name, task.id,
                     task.attempt, error_type, _short(error), delay)
            retry = wire.retry_fields(task, fields[wire.PAYLOAD], fields.get(wire.SCHEDULE))
            if await _with_redis_retries(lambda: streams.schedule_retry(self._redis, pipeline, task.entry_id,
                                                                         retry, delay), pipeline.name):
                self._observers.emit("task_retried", task, delay)
                self._delayed_waiting = True
                self._retry_scheduled.set()
            else:
                log.warning("%s: task %s was no longer pending when its retry was parked (taken over by another "
                            "worker, or the Redis step gave up); it is not retried from here", pipeline.name, task.id)
            return
        log.warning("%s: task %s %s (attempt %d): %s: %s", pipeline.name, task.id,
                    "rejected by its handler" if rejected else "failed on its last attempt",
                    task.attempt, error_type, _short(error))
        trace = getattr(error, "trace", None) or "".join(traceback.format_exception(error))
        reason = "rejected" if rejected else "handler_error"
        await self._dead_letter(task.entry_id, task.id, fields[wire.PAYLOAD], reason, task.attempt,
                                task.crashes, error_type, str(error), trace, fields)

    async def _dead_letter(self, entry_id: str, task_id: str, raw_payload: bytes | None, reason: str,
                           attempts: int, crashes: int, error_type: str, message: str, trace: str,
                           fields: dict[bytes, bytes] | None = None) -> None:
        entry: dict[str, str | bytes] = {
            "id": task_id,
            "pipeline": self.pipeline.name,
            "reason": reason,
            "attempts": str(attempts),
            "crashes": str(crashes),
            "error_type": error_type,
            "error": message[:MAX_ERROR_TEXT],
            "traceback": trace[-MAX_ERROR_TEXT:],
            "failed_at": f"{time.time():.3f}",
            "origin_entry": entry_id,
            "consumer": self._consumer,
        }
        if raw_payload is not None:
            entry["payload"] = raw_payload
        if await _with_redis_retries(lambda: streams.dead_letter(self._redis, self.pipeline, entry_id, entry),
                                     self.pipeline.name):
            self._observers.emit("task_dead_lettered", self.pipeline.name, task_id, reason)
        # Ended either way (0 means it was already moved, perhaps by us with the reply lost).
        await self._schedule_finished(fields or {})

    async def _promote_loop(self) -> None:
        """Move due retries into the stream; sleep until the next is due or a new retry is parked."""
        failures = 0
        while not self._stopping.is_set():
            try:
                _, wait, malformed = await streams.promote_due(self._redis, self.pipeline)
                failures = 0
                for _ in range(malformed):
                    log.warning("%s: a malformed delayed-set member was moved to the DLQ (bad_delayed_member)",
                                self.pipeline.name)
                    self._observers.emit("task_dead_lettered", self.pipeline.name, "?", "bad_delayed_member")
            except connection.REDIS_TROUBLE as exc:
                failures += 1
                wait = pause_after(failures, 0.2, 30.0)
                log.warning("%s: moving due retries failed (%s)", self.pipeline.name, exc)
            self._delayed_waiting = wait is not None
            self._retry_scheduled.clear()
            await sleep_unless(self._retry_scheduled,
                               PROMOTE_POLL if wait is None else min(max(wait, 0.002), PROMOTE_POLL))


async def _with_redis_retries(step: Callable[[], Any], pipeline: str, attempts: int = 8) -> bool:
    """Run one atomic step, retrying through brief Redis trouble; give up leaving the entry pending."""
    for attempt in range(1, attempts + 1):
        try:
            return bool(await step())
        except connection.REDIS_TROUBLE as exc:  # connection trouble, or an error reply such as OOM
            if attempt == attempts:
                log.error("%s: giving up on a Redis step after %d tries (%s); the entry stays pending",
                          pipeline, attempts, exc)
                return False
            await asyncio.sleep(pause_after(attempt, 0.1, 5.0))
    return False


def _short(error: BaseException, limit: int = 200) -> str:
    text = str(error)
    return text if len(text) <= limit else text[: limit - 1] + "…"
