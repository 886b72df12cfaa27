"""Reading what the fault handlers recorded, and what Redis holds at the end of a run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import redis as redis_sync

from conftest import Project

PLUGIN = Path(__file__).resolve().parent / "plugins" / "faults.py"


@dataclass(frozen=True)
class Event:
    task_id: str
    attempt: int
    pid: int
    at: float


def install(project: Project) -> Project:
    shutil.copy(PLUGIN, project.plugins / "faults.py")
    return project


def events(project: Project, kind: str) -> list[Event]:
    parsed = []
    for line in project.recorded(kind):
        task_id, attempt, pid, at = line.split()[:4]
        parsed.append(Event(task_id, int(attempt), int(pid), float(at)))
    return parsed


def dlq_ids(redis: redis_sync.Redis, name: str) -> list[str]:
    return [fields[b"id"].decode() for _, fields in redis.xrange(f"buraq:{{{name}}}:dlq")]


def pending(redis: redis_sync.Redis, name: str) -> int:
    return redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"]


def pending_of(redis: redis_sync.Redis, name: str, consumer: str) -> list[str]:
    rows = redis.xpending_range(f"buraq:{{{name}}}:tasks", "buraq", min="-", max="+", count=100_000,
                                consumername=consumer)
    return [row["message_id"].decode() for row in rows]
