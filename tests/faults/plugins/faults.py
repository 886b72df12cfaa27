"""Handlers for fault-injection runs. Each writes one line per event to $BURAQ_RECORDS/<kind>:
start and done lines carry the task id, attempt, pid and time, so a test can rebuild the history."""

import asyncio
import os
import time

import buraq


def record(kind, task, *extra):
    line = " ".join(str(part) for part in (task.id, task.attempt, os.getpid(), f"{time.time():.4f}", *extra))
    with open(os.path.join(os.environ["BURAQ_RECORDS"], kind), "a") as handle:
        handle.write(line + "\n")


async def work(task):
    """Takes options.seconds (default 0.1): long enough for crashes to catch tasks in flight."""
    record("start", task)
    await asyncio.sleep(float(task.options.get("seconds", 0.1)))
    record("done", task)


def hang(task):
    """A plain def that never returns unless its payload says it is quick."""
    record("start", task)
    if task.payload.get("quick"):
        record("done", task)
        return
    time.sleep(3600)


def exit_process(task):
    """Kills its own process when the payload says so: a poison task."""
    record("start", task)
    if task.payload.get("die"):
        os._exit(1)
    record("done", task)


@buraq.hookimpl
def register_handlers(register):
    register("fault.work", work)
    register("fault.hang", hang)
    register("fault.exit", exit_process)
