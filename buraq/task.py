"""The task a handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work, as a handler sees it.

    ``id`` stays the same across retries and replays, so handlers can use it as
    an idempotency key; delivery is at-least-once, so they may need one.
    ``attempt`` counts every start of the task, including ones whose worker died;
    ``crashes`` says how many of the earlier attempts ended that way. ``due_at``
    is set on tasks that waited (a delay, a retry's backoff, a schedule's tick).
    """

    id: str
    payload: Any
    attempt: int
    pipeline: str
    options: dict[str, Any] = field(default_factory=dict)
    entry_id: str = ""
    enqueued_at: float = 0.0
    crashes: int = 0
    due_at: float | None = None  # for a delayed, retried or scheduled task: when it was due (Redis clock)
