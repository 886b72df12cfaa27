"""The task a handler receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work, as a handler sees it.

    ``id`` stays the same across retries and replays, so handlers can use it as
    an idempotency key; delivery is at-least-once, so they may need one.
    """

    id: str
    payload: Any
    attempt: int
    pipeline: str
    options: dict[str, Any] = field(default_factory=dict)
    entry_id: str = ""
    enqueued_at: float = 0.0
