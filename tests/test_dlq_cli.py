"""`buraq dlq list|show|replay|purge` against real dead-lettered tasks."""

from __future__ import annotations

import json

import pytest

from conftest import Project

# Fails while $BURAQ_RECORDS/broken exists; records each success.
FIXABLE_PLUGIN = '''
import os
import buraq

def handle(task):
    records = os.environ["BURAQ_RECORDS"]
    if os.path.exists(os.path.join(records, "broken")):
        raise ConnectionRefusedError(f"downstream is down (task {task.payload['n']})")
    with open(os.path.join(records, "ok"), "a") as f:
        f.write(f"{task.id} {task.attempt}\\n")

@buraq.hookimpl
def register_handlers(register):
    register("test.fixable", handle)
'''


@pytest.fixture
def dead(project: Project, redis) -> tuple[Project, str, list[str]]:
    """A pipeline with three tasks dead-lettered by a broken downstream, and one undecodable entry."""
    project.plugin("fixable.py", FIXABLE_PLUGIN)
    name = project.pipeline("billing", "handler: test.fixable\nretry: {attempts: 1}\n")
    (project.records / "broken").write_text("")
    ids = project.buraq("enqueue", name, input="".join(f'{{"n": {i}}}\n' for i in range(3))).stdout.split()
    redis.xadd(f"buraq:{{{name}}}:tasks", {"payload": "not json"})
    served = project.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert served.returncode == 0, served.stderr
    return project, name, ids


def test_list_and_show_give_tables_for_people_and_json_for_scripts(dead: tuple[Project, str, list[str]]) -> None:
    project, name, ids = dead
    table = project.buraq("dlq", "list", name)
    assert table.returncode == 0
    assert f"buraq:{{{name}}}:dlq: 4 dead-lettered task(s)" in table.stdout
    assert table.stdout.count("ConnectionRefusedError: downstream is down") == 3
    rows = [json.loads(line) for line in project.buraq("dlq", "list", name, "--json").stdout.splitlines()]
    assert sorted(r["id"] for r in rows if r["reason"] == "handler_error") == sorted(ids)
    shown = project.buraq("dlq", "show", name, ids[0])
    assert shown.returncode == 0
    assert "error_type: ConnectionRefusedError" in shown.stdout and "Traceback" in shown.stdout
    [row] = [json.loads(line) for line in project.buraq("dlq", "show", name, ids[0], "--json").stdout.splitlines()]
    assert row["id"] == ids[0] and row["payload"] == '{"n":0}' and row["attempts"] == "1"
    missing = project.buraq("dlq", "show", name, "no-such-task")
    assert missing.returncode == 1 and "no entry 'no-such-task'" in missing.stderr


def test_replay_by_error_type_keeps_task_ids_and_the_tasks_then_succeed(dead: tuple[Project, str, list[str]],
                                                                     redis) -> None:
    project, name, ids = dead
    # Given the downstream is fixed
    (project.records / "broken").unlink()
    # When the failures of that kind are replayed (the undecodable entry is not of that kind)
    replay = project.buraq("dlq", "replay", name, "--error-type", "ConnectionRefusedError", "--json")
    assert replay.returncode == 0, replay.stderr
    assert sorted(json.loads(replay.stdout)["replayed"]) == sorted(ids)
    served = project.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert served.returncode == 0, served.stderr
    # Then each ran once more under its own task id, as attempt 1, and only the undecodable one is left
    assert sorted(project.recorded("ok")) == sorted(f"{task_id} 1" for task_id in ids)
    left = redis.xrange(f"buraq:{{{name}}}:dlq")
    assert [fields[b"reason"] for _, fields in left] == [b"decode"]


def test_purge_asks_for_confirmation_and_deletes_only_what_was_picked(dead: tuple[Project, str, list[str]],
                                                                     redis) -> None:
    project, name, ids = dead
    refused = project.buraq("dlq", "purge", name, "--reason", "decode")
    assert refused.returncode == 1 and "add --yes to confirm" in refused.stderr
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 4
    purged = project.buraq("dlq", "purge", name, "--reason", "decode", "--yes", "--json")
    assert purged.returncode == 0 and json.loads(purged.stdout) == {"deleted": 1}
    by_id = project.buraq("dlq", "purge", name, "--id", ids[1], "--yes")
    assert by_id.returncode == 0 and "deleted 1 entries" in by_id.stdout
    remaining = sorted(fields[b"id"].decode() for _, fields in redis.xrange(f"buraq:{{{name}}}:dlq"))
    assert remaining == sorted([ids[0], ids[2]])


def test_a_selection_by_entry_never_catches_a_row_whose_task_id_looks_the_same() -> None:
    from buraq.dlq import Selection

    # A DLQ entry id and another row's task id can be equal (separate streams, same millisecond)
    rows = [{"entry": "1700000000005-0", "id": "1700000000001-0"}, {"entry": "1700000000001-0", "id": "t-9"}]
    assert [r["id"] for r in rows if Selection(entries=("1700000000001-0",)).matches(r)] == ["t-9"]
    assert len([r for r in rows if Selection(ids=("1700000000001-0",)).matches(r)]) == 2  # `--id` means either
