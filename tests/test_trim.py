"""Stream trimming: acknowledged entries go, so Redis's memory returns; pending or unread ones never do."""

from __future__ import annotations

import signal
import time

from conftest import Project, wait_for

HOLD_PLUGIN = '''
import asyncio, os
import buraq

async def work(task):
    release = os.path.join(os.environ["BURAQ_RECORDS"], "release")
    while task.payload.get("hold") and not os.path.exists(release):
        await asyncio.sleep(0.05)
    with open(os.path.join(os.environ["BURAQ_RECORDS"], "done"), "a") as f:
        f.write(task.id + "\\n")

@buraq.hookimpl
def register_handlers(register):
    register("hold.work", work)
'''


def test_acknowledged_entries_are_trimmed_but_never_a_pending_one(project: Project, redis) -> None:
    # Given 5 held tasks, the oldest in the stream, then 2,000 quick ones
    project.plugin("hold.py", HOLD_PLUGIN)
    name = project.pipeline("trim", "handler: hold.work\npool: 50\n")
    stream = f"buraq:{{{name}}}:tasks"
    held = project.buraq("enqueue", name, input='{"hold": true}\n' * 5).stdout.split()
    assert project.buraq("enqueue", name, input="{}\n" * 2000).returncode == 0
    server = project.serve()

    # When the quick ones are done, and the trimmer has had two passes
    wait_for(lambda: len(project.recorded("done")) == 2000, message="2,000 quick tasks done")
    wait_for(lambda: redis.xpending(stream, "buraq")["pending"] == 5, message="only the held tasks pending")
    time.sleep(2.5)

    # Then nothing was trimmed: the oldest pending entry is the floor
    assert redis.xlen(stream) == 2005
    assert [e[0].decode() for e in redis.xrange(stream, count=5)] == held

    # And once the held tasks finish, the stream shrinks to a node's worth at most
    (project.records / "release").write_text("")
    wait_for(lambda: redis.xlen(stream) <= 100, timeout=10, message="the stream trimmed")
    assert sorted(project.recorded("done")[-5:]) == sorted(held)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_entries_another_group_has_not_read_are_kept(project: Project, redis) -> None:
    # Given a second consumer group on the stream that reads nothing (say, an audit reader)
    project.plugin("hold.py", HOLD_PLUGIN)
    name = project.pipeline("audited", "handler: hold.work\npool: 50\n")
    stream = f"buraq:{{{name}}}:tasks"
    assert project.buraq("enqueue", name, input="{}\n" * 500).returncode == 0
    redis.xgroup_create(stream, "audit", id="0")

    # When buraq's group has done every task and the server stops (its last trim pass)
    server = project.serve("--burst")
    assert server.wait() == 0
    assert len(project.recorded("done")) == 500

    # Then every entry is still there for the other group
    assert redis.xlen(stream) == 500
