"""The wire format: which fields a stream entry carries and what they mean.

A producer in any language writes ``XADD <stream> * payload '<json>'``. buraq
adds ``id`` (the task id, kept across retries; absent on a first delivery,
where the task id is the entry id), ``attempt`` (absent means 1) and
``crashes`` (earlier attempts whose worker died; absent means 0), ``due``
(ms, Redis clock: when a delayed, retried or scheduled task was due) and
``schedule`` (the schedule that fired it). Anything else in the entry is
ignored. See docs/wire-format.md.

Attempts are counted from Redis, not from process memory: an entry Redis has
delivered N times has been started N-1 more times than its ``attempt`` field
says, each by a worker that died before ending it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from buraq.errors import TaskRejected
from buraq.task import Task

PAYLOAD = b"payload"
TASK_ID = b"id"
ATTEMPT = b"attempt"
CRASHES = b"crashes"
DUE = b"due"
SCHEDULE = b"schedule"
PARENT = b"parent"


class Undecodable(Exception):
    """An entry no handler can be given; it goes to the DLQ on first delivery, without retries."""

    def __init__(self, reason: str, message: str, task_id: str, raw_payload: bytes | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.task_id = task_id
        self.raw_payload = raw_payload


def entry_millis(entry_id: str) -> int:
    """When Redis added an entry, in ms since the epoch (the first part of its id)."""
    return int(entry_id.partition("-")[0])


def entry_time(entry_id: str) -> float:
    """When Redis added the entry, in seconds since the epoch (from the entry id)."""
    return entry_millis(entry_id) / 1000.0


def decode_entry(entry_id: str, fields: dict[bytes, bytes], pipeline: str, codec: Any,
                 max_payload: int, options: dict[str, Any], deliveries: int = 1,
                 check: Callable[[Any], None] | None = None) -> Task:
    """Turn one stream entry (delivered ``deliveries`` times) into a Task, or raise Undecodable saying why not.

    (An entry trimmed from the stream while pending has no fields at all; the engine drops it
    before decoding, as there is nothing left to run or to keep.)
    """
    task_id = fields.get(TASK_ID)
    task_id_text = task_id.decode("utf-8", "replace") if task_id else entry_id
    raw = fields.get(PAYLOAD)
    if raw is None:
        raise Undecodable("missing_payload", "entry has no 'payload' field", task_id_text, None)
    if len(raw) > max_payload:
        raise Undecodable("too_large", f"payload is {len(raw)} bytes; the limit is {max_payload}", task_id_text, raw)
    attempt_raw = fields.get(ATTEMPT, b"1")
    crashes_raw = fields.get(CRASHES, b"0")
    try:
        attempt, crashes = int(attempt_raw), int(crashes_raw)
        if attempt < 1 or crashes < 0:
            raise ValueError
    except ValueError:
        raise Undecodable("bad_attempt", f"'attempt' {attempt_raw!r} / 'crashes' {crashes_raw!r} fields are not "
                          "counts", task_id_text, raw) from None
    redelivered = max(0, deliveries - 1)
    due = fields.get(DUE)
    try:
        payload = codec.decode(raw)
    except Exception as exc:
        raise Undecodable("decode", f"payload cannot be decoded: {exc}", task_id_text, raw) from None
    if check is not None:
        try:
            check(payload)
        except ValueError as exc:
            raise Undecodable("schema", str(exc), task_id_text, raw) from None
    return Task(id=task_id_text, payload=payload, attempt=attempt + redelivered, pipeline=pipeline, options=options,
                entry_id=entry_id, enqueued_at=entry_time(entry_id), crashes=crashes + redelivered,
                due_at=int(due) / 1000.0 if due and due.isdigit() else None)


def encode_payload(pipeline: str, codec: Any, max_payload: int, check: Callable[[Any], None] | None,
                   payload: Any) -> bytes:
    """A payload as ``pipeline`` accepts it: schema-checked, encoded and within max_payload, or TaskRejected."""
    if check is not None:
        try:
            check(payload)
        except ValueError as exc:
            raise TaskRejected(f"{pipeline}: {exc}") from None
    try:
        data = codec.encode(payload)
    except (TypeError, ValueError) as exc:
        raise TaskRejected(f"payload for {pipeline!r} cannot be encoded: {exc}") from None
    if len(data) > max_payload:
        raise TaskRejected(f"payload for {pipeline!r} is {len(data)} bytes; the pipeline's max_payload is {max_payload}")
    return data


def first_delivery_fields(encoded_payload: bytes, task_id: str | None = None) -> dict[bytes, bytes]:
    """A new task's entry; ``task_id`` is given only when no entry id can serve (a delayed task)."""
    if task_id is None:
        return {PAYLOAD: encoded_payload}
    return {TASK_ID: task_id.encode(), PAYLOAD: encoded_payload}


def retry_fields(task: Task, raw_payload: bytes, schedule: bytes | None = None) -> dict[bytes, bytes]:
    """The entry for the task's next attempt."""
    fields = {TASK_ID: task.id.encode(), ATTEMPT: str(task.attempt + 1).encode(), PAYLOAD: raw_payload}
    if schedule is not None:
        fields[SCHEDULE] = schedule
    if task.crashes:
        fields[CRASHES] = str(task.crashes).encode()
    return fields
