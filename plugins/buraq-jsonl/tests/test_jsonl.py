"""The jsonl.append handler, called directly with real files."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

import buraq
import buraq_jsonl
from buraq.plugins import load_plugins


def task(task_id: str, payload: object, path: Path | str | None, attempt: int = 1, **options: object) -> buraq.Task:
    if path is not None:
        options["path"] = str(path)
    return buraq.Task(id=task_id, payload=payload, attempt=attempt, pipeline="events", options=options)


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_appends_one_json_line_per_task(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "events.jsonl"  # folders are created
    first = buraq_jsonl.append(task("t1", {"type": "signup", "user": 42}, path))
    buraq_jsonl.append(task("t2", ["a", 1, None], path, attempt=3))
    buraq_jsonl.append(task("t3", "naïve ✓", path, fsync=True))

    assert first == {"path": str(path)}
    assert read_lines(path) == [
        {"id": "t1", "pipeline": "events", "attempt": 1, "payload": {"type": "signup", "user": 42}},
        {"id": "t2", "pipeline": "events", "attempt": 3, "payload": ["a", 1, None]},
        {"id": "t3", "pipeline": "events", "attempt": 1, "payload": "naïve ✓"},
    ]
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3
    assert "naïve ✓".encode() in raw  # written as UTF-8, not \u escapes


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": "old"}\n', encoding="utf-8")
    buraq_jsonl.append(task("new", 1, path))
    assert [row["id"] for row in read_lines(path)] == ["old", "new"]


def test_relative_path_is_reported_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = buraq_jsonl.append(task("t", {}, "var/out.jsonl"))
    assert result == {"path": str(tmp_path / "var" / "out.jsonl")}
    assert read_lines(tmp_path / "var" / "out.jsonl")[0]["id"] == "t"


def test_concurrent_appends_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "busy.jsonl"
    threads_count, per_thread = 8, 25
    # Lines far larger than a write buffer; see the named-pipe test below for why this alone is not enough.
    filler = {n: str(n) * 100_000 for n in range(threads_count)}
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                buraq_jsonl.append(task(f"{n}-{i}", {"worker": n, "i": i, "fill": filler[n]}, path))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors

    rows = read_lines(path)  # every line must be whole JSON
    assert len(rows) == threads_count * per_thread
    assert sorted(row["id"] for row in rows) == sorted(f"{n}-{i}" for n in range(threads_count) for i in range(per_thread))
    for row in rows:
        payload = row["payload"]
        assert payload["fill"] == filler[payload["worker"]]
    # Each worker's own lines keep their order.
    for n in range(threads_count):
        assert [row["payload"]["i"] for row in rows if row["payload"]["worker"] == n] == list(range(per_thread))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_concurrent_appends_to_a_pipe_do_not_interleave(tmp_path: Path) -> None:
    """On a regular Linux file one large write() is not split, so the test above would pass even
    without a lock. A named pipe splits writes above PIPE_BUF, so here only the handler's
    per-path lock keeps lines whole (without it, unsynchronised writers visibly interleave)."""
    fifo = tmp_path / "events.pipe"
    os.mkfifo(fifo)
    threads_count, per_thread = 8, 20
    expected_lines = threads_count * per_thread
    received: list[bytes] = []

    def reader() -> None:
        fd = os.open(fifo, os.O_RDWR)  # read-write: never sees EOF between writers
        data = b""
        try:
            while data.count(b"\n") < expected_lines:
                data += os.read(fd, 1 << 20)
        finally:
            os.close(fd)
        received.append(data)

    reading = threading.Thread(target=reader, daemon=True)
    reading.start()
    filler = {n: chr(ord("a") + n) * 50_000 for n in range(threads_count)}
    start = threading.Barrier(threads_count)

    def worker(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            buraq_jsonl.append(task(f"{n}-{i}", {"worker": n, "fill": filler[n]}, fifo))

    writers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads_count)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    reading.join(60)
    assert received, "reader did not get every line"
    rows = [json.loads(line) for line in received[0].splitlines()]
    assert len(rows) == expected_lines
    assert all(row["payload"]["fill"] == filler[row["payload"]["worker"]] for row in rows)


@pytest.mark.parametrize("options", [{}, {"path": ""}, {"path": None}])
def test_missing_path_raises_value_error(tmp_path: Path, options: dict[str, object]) -> None:
    bad = buraq.Task(id="t", payload=1, attempt=1, pipeline="events", options=options)
    with pytest.raises(ValueError, match="options.path"):
        buraq_jsonl.append(bad)
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_payload_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with pytest.raises(TypeError):
        buraq_jsonl.append(task("t", {"when": object()}, path))
    assert not path.exists()


def test_registered_as_jsonl_append(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURAQ_PLUGINS", raising=False)  # load every installed plugin
    registry = load_plugins(plugins_dir=None)
    handler = registry.handler("jsonl.append")
    assert handler.function is buraq_jsonl.append
    assert handler.is_async is False
    assert "buraq-jsonl" in handler.plugin


def test_validate_checks_the_options_against_the_registered_schema(tmp_path) -> None:
    import subprocess
    import sys

    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "events.yaml").write_text("name: events\nhandler: jsonl.append\noptions:\n  fsnyc: true\n")
    result = subprocess.run([sys.executable, "-m", "buraq", "validate", str(pipelines)], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert "events.yaml:4: unknown key options.fsnyc (allowed: fsync, path)" in result.stderr
    assert "events.yaml:3: options: 'path' is a required property" in result.stderr
