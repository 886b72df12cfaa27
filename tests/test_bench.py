"""`buraq bench`: a small real run against Redis writes a sane JSON result; bad arguments are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _bench(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "buraq", "bench", "--redis-url", redis_url, *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)


def test_bench_writes_a_json_result_with_the_documented_shape(tmp_path: Path, redis_url: str) -> None:
    # Given a small run with two serve processes and the INCR handler
    done = _bench(tmp_path, redis_url, "--tasks", "600", "--processes", "2", "--pool", "20", "--handler", "incr",
                  "--rate", "200", "--latency-tasks", "100")
    assert done.returncode == 0, done.stderr

    # Then the default output and its timestamped copy exist and agree
    folder = tmp_path / ".buraq" / "bench"
    result = json.loads((folder / "latest.json").read_text())
    copies = [p for p in folder.glob("bench-*.json")]
    assert len(copies) == 1 and json.loads(copies[0].read_text()) == result

    assert result["format"] == 1 and result["finished_at"].startswith("20")
    assert {"cpu", "cores", "python", "redis", "buraq"} <= set(result["machine"]) and result["machine"]["cores"] >= 1
    assert result["settings"]["tasks"] == 600 and result["settings"]["processes"] == 2
    assert result["enqueue"]["tasks"] == 600 and result["enqueue"]["rate"] > 0 and result["enqueue"]["seconds"] > 0
    [drain] = result["drain"]
    assert drain == {**drain, "handler": "incr", "processes": 2, "pool": 20, "tasks": 600}
    assert drain["rate"] > 0 and drain["seconds"] > 0
    assert drain["counter"] == 600  # every task ran its INCR, none twice
    assert result["bare_incr"]["tasks"] == 600 and result["bare_incr"]["rate"] > 0 and result["incr_vs_bare"] > 0
    latency = result["latency"]
    assert latency["rate"] == 200 and latency["tasks"] == 100
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] < 5000
    assert result["rss_mb"]["start"] > 5 and len(result["rss_mb"]["peak"]) == 2
    assert all(peak >= 5 for peak in result["rss_mb"]["peak"])
    # And the summary went to stdout
    assert "tasks/s" in done.stdout and "p99" in done.stdout


def test_bench_honours_output_and_can_skip_latency(tmp_path: Path, redis_url: str) -> None:
    out = tmp_path / "results" / "run.json"
    done = _bench(tmp_path, redis_url, "--tasks", "300", "--latency-tasks", "0", "--runs", "2", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert [row["tasks"] for row in result["drain"]] == [300, 300]
    assert result["latency"]["tasks"] == 0 and result["latency"]["p50_ms"] is None
    assert "bare_incr" not in result
    assert not (tmp_path / ".buraq").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "0"], "argument --tasks: must be at least 1, got 0"),
    (["--processes", "-2"], "argument --processes: must be at least 1, got -2"),
    (["--pool", "many"], "argument --pool: expected a whole number, got 'many'"),
    (["--rate", "0"], "argument --rate: must be a positive number, got 0"),
    (["--handler", "sleep"], "argument --handler: invalid choice: 'sleep'"),
])
def test_bench_refuses_bad_arguments_clearly(tmp_path: Path, redis_url: str, args: list[str], message: str) -> None:
    done = _bench(tmp_path, redis_url, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / ".buraq").exists()  # nothing ran
