"""The wire format: which fields a stream entry carries and what they mean.

A producer in any language writes ``XADD <stream> * payload '<json>'``. buraq
adds ``id`` (the task id, kept across retries; absent on a first delivery,
where the task id is the entry id) and ``attempt`` (absent means 1). Anything
else in the entry is ignored. See docs/wire-format.md.
"""

from __future__ import annotations

from typing import Any

from buraq.task import Task

PAYLOAD = b"payload"
TASK_ID = b"id"
ATTEMPT = b"attempt"


class Undecodable(Exception):
    """An entry no handler can be given; it goes to the DLQ on first delivery, without retries."""

    def __init__(self, reason: str, message: str, task_id: str, raw_payload: bytes | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.task_id = task_id
        self.raw_payload = raw_payload


def entry_time(entry_id: str) -> float:
    """When Redis added the entry, in seconds since the epoch (from the entry id)."""
    millis, _, _ = entry_id.partition("-")
    return int(millis) / 1000.0


def decode_entry(entry_id: str, fields: dict[bytes, bytes] | None, pipeline: str, codec: Any,
                 max_payload: int, options: dict[str, Any]) -> Task:
    """Turn one stream entry into a Task, or raise Undecodable saying why not."""
    if not fields:
        raise Undecodable("missing_fields", "entry has no fields (deleted or trimmed while pending)", entry_id, None)
    task_id = fields.get(TASK_ID)
    task_id_text = task_id.decode("utf-8", "replace") if task_id else entry_id
    raw = fields.get(PAYLOAD)
    if raw is None:
        raise Undecodable("missing_payload", "entry has no 'payload' field", task_id_text, None)
    if len(raw) > max_payload:
        raise Undecodable("too_large", f"payload is {len(raw)} bytes; the limit is {max_payload}", task_id_text, raw)
    attempt_raw = fields.get(ATTEMPT, b"1")
    try:
        attempt = int(attempt_raw)
        if attempt < 1:
            raise ValueError
    except ValueError:
        raise Undecodable("bad_attempt", f"'attempt' field {attempt_raw!r} is not a positive integer",
                          task_id_text, raw) from None
    try:
        payload = codec.decode(raw)
    except Exception as exc:
        raise Undecodable("decode", f"payload cannot be decoded: {exc}", task_id_text, raw) from None
    return Task(id=task_id_text, payload=payload, attempt=attempt, pipeline=pipeline, options=options,
                entry_id=entry_id, enqueued_at=entry_time(entry_id))


def first_delivery_fields(encoded_payload: bytes) -> dict[bytes, bytes]:
    return {PAYLOAD: encoded_payload}


def retry_fields(task_id: str, attempt: int, raw_payload: bytes) -> dict[bytes, bytes]:
    return {TASK_ID: task_id.encode(), ATTEMPT: str(attempt).encode(), PAYLOAD: raw_payload}
