"""The dashboard's JSON API over real HTTP against a real `buraq serve`: what it reports is what
/metrics and `buraq status` say, and what it changes (DLQ replay, purge) happens in Redis."""

from __future__ import annotations

import json
import signal

import pytest

from conftest import Project, Server, wait_for
from web_helpers import Web, enqueue, fixable_project, metric, overview_of, served

OK, VALUE_ERRORS, KEY_ERRORS = 6, 3, 2


@pytest.fixture
def busy(project: Project) -> tuple[Project, Server, Web, str, dict[str, list[str]]]:
    """A served pipeline that has run 6 good tasks and dead-lettered 3 ValueErrors and 2 KeyErrors,
    all enqueued after the dashboard had sampled an idle pipeline."""
    name = fixable_project(project)
    server, web = served(project)
    wait_for(lambda: len(web.get_json(f"/api/pipelines/{name}/series?seconds=60")["t"]) >= 2,
             message="two idle samples")
    ids = {"ok": enqueue(project, name, [{"n": i} for i in range(OK)]),
           "ValueError": enqueue(project, name, [{"n": i, "fail": "ValueError"} for i in range(VALUE_ERRORS)]),
           "KeyError": enqueue(project, name, [{"n": i, "fail": "KeyError"} for i in range(KEY_ERRORS)])}
    wait_for(lambda: metric(server.metrics(), "buraq_tasks_dlq_total", name) == VALUE_ERRORS + KEY_ERRORS
             and metric(server.metrics(), "buraq_tasks_processed_total", name) == OK, message="all tasks ended")
    return project, server, web, name, ids


def test_overview_and_series_say_what_metrics_and_status_say(busy) -> None:
    project, server, web, name, _ = busy
    assert enqueue(project, name, [{"n": "later"}]) and project.buraq(
        "enqueue", name, '{"n": "delayed"}', "--delay", "1h").returncode == 0
    wait_for(lambda: metric(server.metrics(), "buraq_tasks_processed_total", name) == OK + 1, message="7th task")
    text = server.metrics()
    # The history samples once a second: wait until it has seen what /metrics now says
    wait_for(lambda: overview_of(web, name)["totals"]["processed"] == OK + 1
             and overview_of(web, name)["queue"]["delayed"] == 1, message="the sampler to catch up")
    row = overview_of(web, name)
    assert row["totals"] == {
        "processed": metric(text, "buraq_tasks_processed_total", name),
        "failed": metric(text, "buraq_tasks_failed_total", name),
        "retried": metric(text, "buraq_tasks_retried_total", name),
        "dead": metric(text, "buraq_tasks_dlq_total", name),
        "reclaimed": metric(text, "buraq_tasks_reclaimed_total", name)}
    assert row["totals"]["processed"] + row["totals"]["dead"] == OK + 1 + VALUE_ERRORS + KEY_ERRORS  # all enqueued
    assert row["totals"]["failed"] == VALUE_ERRORS + KEY_ERRORS and row["totals"]["retried"] == 0
    assert row["handler"] == "dash.fixable" and row["stream"] == f"buraq:{{{name}}}:tasks"
    assert row["slots"] == metric(text, "buraq_worker_slots", name) > 0
    [status] = json.loads(project.buraq("status", "--json").stdout)
    assert row["queue"]["dlq"] == status["dlq"] == VALUE_ERRORS + KEY_ERRORS
    assert row["queue"]["delayed"] == status["delayed"] == 1
    assert row["queue"]["pending"] == status["pending"] == 0
    assert row["queue"]["depth"] == status["queued"] + status["pending"] == 0
    overview = web.get_json("/api/overview")
    assert overview["processes"] == 1 and overview["version"]

    series = web.get_json(f"/api/pipelines/{name}/series?seconds=120")
    assert series["pipeline"] == name
    lengths = {key: len(values) for key, values in series.items() if isinstance(values, list)}
    assert len(set(lengths.values())) == 1 and lengths["t"] >= 3, lengths
    gaps = [b - a for a, b in zip(series["t"], series["t"][1:])]
    assert all(0.5 < gap < 2.0 for gap in gaps), gaps  # one point a second
    # Rates integrate back to the counts: the series began idle, before the first task
    assert series["processed"][0] == 0
    done = sum(rate * gap for rate, gap in zip(series["processed"][1:], gaps))
    assert done == pytest.approx(OK + 1, abs=0.01)
    assert series["dlq"][-1] == VALUE_ERRORS + KEY_ERRORS and series["delayed"][-1] == 1
    assert any(p is not None for p in series["latency_p50_ms"])

    charts = web.get_json(f"/api/pipelines/{name}/charts?seconds=120")
    assert set(charts) == {"throughput", "latency", "utilisation", "depth", "dlq"}
    for svg in charts.values():
        assert svg.startswith("<svg") and svg.endswith("</svg>") and "<polyline" in svg
    assert 'data-series="processed"' in charts["throughput"] and 'data-series="p99"' in charts["latency"]
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_dead_letters_list_patterns_inspect_replay_and_purge(busy, redis) -> None:
    project, _, web, name, ids = busy
    dead = web.get_json(f"/api/pipelines/{name}/dlq?count=20")
    assert dead["total"] == VALUE_ERRORS + KEY_ERRORS
    assert sorted(row["id"] for row in dead["entries"]) == sorted(ids["ValueError"] + ids["KeyError"])
    counts = {(p["reason"], p["error_type"]): p["count"] for p in dead["patterns"]}
    assert counts == {("handler_error", "ValueError"): VALUE_ERRORS, ("handler_error", "KeyError"): KEY_ERRORS}
    assert dead["patterns"][0]["error_type"] == "ValueError" and "failed with ValueError" in \
        dead["patterns"][0]["sample"]["error"]
    fewer = web.get_json(f"/api/pipelines/{name}/dlq?count=2")
    assert len(fewer["entries"]) == 2 and sum(p["count"] for p in fewer["patterns"]) == 5  # patterns see all

    task = ids["ValueError"][1]
    [entry] = web.get_json(f"/api/pipelines/{name}/dlq/{task}")["entries"]
    assert json.loads(entry["payload"]) == {"n": 1, "fail": "ValueError"}
    assert "Traceback" in entry["traceback"] and "ValueError: task 1 failed with ValueError" in entry["traceback"]
    by_entry = web.get_json(f"/api/pipelines/{name}/dlq/{entry['entry']}")["entries"]
    assert [row["id"] for row in by_entry] == [task]

    # Given the downstream is fixed, a replay of one task from the page runs it again under its id
    (project.records / "fixed").write_text("")
    csrf = web.csrf()
    replayed = web.post_json(f"/api/pipelines/{name}/dlq/replay", {"ids": [task]}, csrf=csrf)
    assert replayed.status == 200, replayed.text
    assert replayed.json() == {"replayed": [task], "skipped": []}
    wait_for(lambda: f"{task} 1" in project.recorded("ok"), message="the replayed task to run")
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == VALUE_ERRORS + KEY_ERRORS - 1
    # Replay by error type, then purge what is left
    by_type = web.post_json(f"/api/pipelines/{name}/dlq/replay", {"error_type": "KeyError"}, csrf=csrf)
    assert sorted(by_type.json()["replayed"]) == sorted(ids["KeyError"])
    wait_for(lambda: all(f"{t} 1" in project.recorded("ok") for t in ids["KeyError"]), message="KeyErrors rerun")
    purged = web.post_json(f"/api/pipelines/{name}/dlq/purge", {"error_type": "ValueError"}, csrf=csrf)
    assert purged.status == 200 and purged.json() == {"deleted": VALUE_ERRORS - 1}
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 0
    assert web.get_json(f"/api/pipelines/{name}/dlq")["total"] == 0
    nothing = web.post_json(f"/api/pipelines/{name}/dlq/purge", {"all": True}, csrf=csrf)
    assert nothing.json() == {"deleted": 0}


def test_bad_requests_and_unknown_names_get_clear_errors(project: Project, redis) -> None:
    name = fixable_project(project)
    enqueue(project, name, [{"n": 0, "fail": "TimeoutError"}])
    _, web = served(project)
    wait_for(lambda: redis.xlen(f"buraq:{{{name}}}:dlq") == 1, message="one dead letter")
    csrf = web.csrf()
    replay = f"/api/pipelines/{name}/dlq/replay"
    for body, why in [("not json", "the body must be JSON"), ("[1]", "must be a JSON object"),
                      ({"ids": "abc"}, "ids must be a list of strings"), ({"ids": [1]}, "list of strings"),
                      ({}, "pick exactly one"), ({"ids": ["x"], "all": True}, "pick exactly one"),
                      ({"all": "yes"}, "pick exactly one")]:
        answer = web.post_json(replay, body, csrf=csrf)
        assert answer.status == 400 and why in answer.json()["error"], (body, answer.text)
        assert web.post_json(f"/api/pipelines/{name}/dlq/purge", body, csrf=csrf).status == 400
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 1  # nothing was replayed or purged
    too_big = web.post_json(replay, {"ids": ["x" * 70_000]}, csrf=csrf)
    assert too_big.status == 413
    for path, status, why in [
            (f"/api/pipelines/{name}/dlq?count=abc", 400, "count must be a whole number"),
            (f"/api/pipelines/{name}/dlq?count=0", 400, "count must be between 1 and 500"),
            (f"/api/pipelines/{name}/series?seconds=0", 400, "seconds must be between 1 and 3600"),
            (f"/api/pipelines/{name}/charts?seconds=99999", 400, "seconds must be between"),
            ("/api/pipelines/nope/series", 404, "no pipeline named 'nope'"),
            ("/api/pipelines/nope/charts", 404, "no pipeline named 'nope'"),
            ("/api/pipelines/nope/dlq", 404, "no pipeline named 'nope'"),
            (f"/api/pipelines/{name}/dlq/no-such-task", 404, "no entry 'no-such-task'"),
            ("/api/nothing", 404, "no such API"),
            ("/static/../pyproject.toml", 404, "no such file")]:
        answer = web.get(path)
        assert answer.status == status and why in answer.json()["error"], (path, answer.status, answer.text)
        assert answer.headers["Content-Type"] == "application/json"
    unknown = web.post_json("/api/pipelines/nope/dlq/replay", {"all": True}, csrf=csrf)
    assert unknown.status == 404 and "no pipeline named 'nope'" in unknown.json()["error"]
    assert web.request("DELETE", f"/api/pipelines/{name}/dlq").status == 405


BENCH_RESULT = {
    "finished_at": "2025-01-01T12:00:00Z",
    "machine": {"cpu": "test cpu", "cores": 2, "python": "3.11", "redis": "7.0", "buraq": "0.1.0"},
    "enqueue": {"rate": 41000.0},
    "drain": [{"handler": "bench.noop", "processes": 1, "rate": 9000.0},
              {"handler": "bench.noop", "processes": 2, "rate": 15500.0}],
    "latency": {"rate": 500, "p50_ms": 1.2, "p95_ms": 3.4, "p99_ms": 7.5},
}


def test_bench_is_404_until_a_result_exists_then_charted(project: Project) -> None:
    fixable_project(project)
    _, web = served(project)
    assert web.get_json("/api/overview")["has_bench"] is False  # the page does not ask for /api/bench yet
    missing = web.get("/api/bench")
    assert missing.status == 404 and "run `buraq bench`" in missing.json()["error"]
    results = project.root / ".buraq" / "bench"
    results.mkdir(parents=True)
    (results / "latest.json").write_text("{broken")
    assert web.get("/api/bench").status == 400
    (results / "latest.json").write_text(json.dumps(BENCH_RESULT))
    bench = web.get_json("/api/bench")
    assert web.get_json("/api/overview")["has_bench"] is True
    assert bench["result"] == BENCH_RESULT
    rates, latency = bench["charts"]["rates"], bench["charts"]["latency"]
    assert rates.count("<rect") == 3 and "drain bench.noop x2" in rates and "15.5k/s" in rates
    assert latency.count("<rect") == 3 and "p99 at 500/s" in latency and "7.5ms" in latency
