"""Append each task to a JSON Lines file.

Pipeline options:
  path: the file to append to (created with its folders if missing)
  fsync: true to fsync after every line (durable across power loss; slower)

Each line is ``{"id": ..., "pipeline": ..., "attempt": ..., "payload": ...}``.
Delivery is at-least-once, so after a crash a line may appear twice; readers
that need exactly-once should de-duplicate on ``id``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import buraq

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def append(task: buraq.Task) -> dict[str, str]:
    """Write one line for ``task``; a plain ``def``, so buraq runs it in a thread."""
    raw_path = task.options.get("path")
    if not raw_path:
        raise ValueError("jsonl.append needs options.path")
    path = Path(raw_path).absolute()
    line = json.dumps({"id": task.id, "pipeline": task.pipeline, "attempt": task.attempt, "payload": task.payload},
                      ensure_ascii=False, separators=(",", ":")) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock_for(path), open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        if task.options.get("fsync"):
            os.fsync(handle.fileno())
    return {"path": str(path)}


OPTIONS_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string", "minLength": 1}, "fsync": {"type": "boolean"}},
    "required": ["path"],
    "additionalProperties": False,
}


@buraq.hookimpl
def register_handlers(register: Callable[..., None]) -> None:
    register("jsonl.append", append, options_schema=OPTIONS_SCHEMA)
