"""The compose stack's Prometheus config and Grafana dashboard, proven against real parts.

A real Prometheus server (the Debian package's binary) scrapes a real `buraq serve` with the
repo's scrape config, and every query on the Grafana dashboard runs in it. promtool checks the
config and a live /metrics page. Without the binaries those tests skip; CI installs them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from conftest import RECORDER_PLUGIN, ROOT, Project, Server, free_port, wait_for

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "buraq.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NO_PROMETHEUS = "no prometheus binary on PATH (CI: apt-get install -y prometheus)"
NO_PROMTOOL = "no promtool binary on PATH (CI: apt-get install -y prometheus, which ships it)"

BEFORE, AFTER, FAILING = 15, 10, 3  # tasks enqueued before Prometheus starts, while it scrapes, and doomed ones
# PromQL functions and keywords the dashboard uses; any other word in a query must be a metric buraq exports.
PROMQL_WORDS = {"sum", "max", "by", "rate", "histogram_quantile"}
# Every panel the dashboard promises (docs/compose.md), by the metric that feeds it.
REQUIRED_METRICS = {
    "buraq_tasks_processed_total", "buraq_tasks_failed_total", "buraq_tasks_retried_total",
    "buraq_task_latency_seconds_bucket", "buraq_task_duration_seconds_bucket", "buraq_worker_slots_busy",
    "buraq_worker_slots", "buraq_queue_depth", "buraq_queue_pending", "buraq_oldest_pending_age_seconds",
    "buraq_dlq_depth", "buraq_delayed_tasks", "buraq_tasks_dlq_total", "buraq_tasks_reclaimed_total",
}
# Series that exist only after a worker died mid-task: the live run cannot show them.
NEEDS_A_DEAD_WORKER = {"buraq_tasks_reclaimed_total", "buraq_entries_trimmed_total"}


# The dashboard, read as data ----------------------------------------------------

def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every panel target."""
    return [(panel["title"], target["expr"]) for panel in _dashboard()["panels"] for target in panel.get("targets", [])]


def _queries() -> list[tuple[str, str]]:
    """The panel queries and the template variable's query."""
    return _panel_queries() + [(f"variable {v['name']}", v["definition"]) for v in _dashboard()["templating"]["list"]]


def _names_in(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression mentions (Grafana variables removed)."""
    expr = re.sub(r"\$\{?\w+(?::\w+)?\}?", "", expr)
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    labels = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels.update(name.strip() for name in grouping.split(",") if name.strip())
    expr = re.sub(r"\bby\s*\([^)]*\)", " ", expr)
    if expr.startswith("label_values"):  # Grafana's variable function: label_values(metric, label)
        metric, label = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", expr.strip()).groups()  # type: ignore[union-attr]
        return {metric}, labels | {label}
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return words - PROMQL_WORDS, labels


def _exported(text: str) -> tuple[set[str], set[str]]:
    """Series names and label names a /metrics page offers, with Prometheus's suffix rules.

    A counter family is queried as <name>_total, a histogram as <name>_bucket/_count/_sum. A
    labelled counter nothing has touched yet has no samples, but its # TYPE line says it exists.
    """
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "summary": ["_count", "_sum", ""]}
    names, labels = set(), set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
        for sample in family.samples:
            names.add(sample.name)
            labels.update(sample.labels)
    return names, labels


def test_the_dashboard_has_a_panel_for_every_promised_metric() -> None:
    used = set().union(*(_names_in(expr)[0] for _, expr in _queries()))
    assert REQUIRED_METRICS <= used, f"no panel queries {sorted(REQUIRED_METRICS - used)}"


def test_every_dashboard_query_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert len(provisioned) == 1 and provisioned[0]["type"] == "prometheus"
    expected = {"type": "prometheus", "uid": provisioned[0]["uid"]}
    dashboard = _dashboard()
    holders = [*dashboard["templating"]["list"], *dashboard["panels"]]
    holders += [target for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for holder in holders:
        if holder.get("type") != "row":
            assert holder.get("datasource") == expected, f"{holder.get('title') or holder.get('refId')}: datasource"


def test_the_dashboard_repeats_its_panels_per_pipeline_from_label_values() -> None:
    dashboard = _dashboard()
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "pipeline" and variable["type"] == "query"
    assert variable["query"]["query"] == variable["definition"] == "label_values(buraq_worker_slots, pipeline)"
    rows = [panel for panel in dashboard["panels"] if panel["type"] == "row"]
    assert [row["repeat"] for row in rows] == ["pipeline"]
    for title, expr in _panel_queries():
        assert '{pipeline=~"$pipeline"}' in expr, f"{title}: {expr} is not filtered by the pipeline variable"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_queue_gauges_are_aggregated_with_max_and_counters_with_sum() -> None:
    # Every `buraq serve` reports the same queue gauges (buraq/gauges.py): sum() would multiply them.
    queue_gauges = {"buraq_queue_depth", "buraq_queue_pending", "buraq_oldest_pending_age_seconds",
                    "buraq_dlq_depth", "buraq_delayed_tasks"}
    for title, expr in _panel_queries():
        metrics = _names_in(expr)[0]
        if metrics & queue_gauges:
            assert expr.startswith("max by (pipeline) ("), f"{title}: {expr}"
        if any(name.endswith(("_total", "_bucket")) for name in metrics):
            assert "sum by (" in expr and "rate(" in expr, f"{title}: {expr}"


# A live buraq and a live Prometheus ----------------------------------------------

@dataclass
class Live:
    project: Project
    server: Server
    good: str
    bad: str


def _counted(text: str, sample_name: str, pipeline: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == sample_name and sample.labels.get("pipeline") == pipeline)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Live]:
    """A `buraq serve` that has run tasks: some succeeded, some failed, were retried and dead-lettered."""
    project = Project(tmp_path_factory.mktemp("live"), redis_url)
    project.plugin("recorder.py", RECORDER_PLUGIN)
    good = project.pipeline("good", "handler: test.ok\n")
    bad = project.pipeline("bad", """
        handler: test.always_fail
        retry: {attempts: 2, backoff: {initial: 50ms, jitter: 0}}
    """)
    assert project.buraq("enqueue", good, input="{}\n" * BEFORE).returncode == 0
    assert project.buraq("enqueue", bad, input="{}\n" * FAILING).returncode == 0
    server = project.serve()
    try:
        server.wait_ready()
        wait_for(lambda: _counted(server.metrics(), "buraq_tasks_processed_total", good) == BEFORE
                 and _counted(server.metrics(), "buraq_tasks_dlq_total", bad) == FAILING, message="the first tasks")
        yield Live(project, server, good, bad)
    finally:
        server.kill()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", f"{promql}: {body}"
    return body["data"]["result"]


def _value(base: str, promql: str) -> float | None:
    result = _query(base, promql)
    return float(result[0]["value"][1]) if result else None


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def prometheus(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Prometheus server on the repo's config, scraping the live buraq; yields its base URL.

    Only the target (the compose service name becomes the test's port) and the interval change.
    More tasks are enqueued once it scrapes, so the dashboard's rates and quantiles have data.
    """
    if PROMETHEUS is None:
        pytest.skip(NO_PROMETHEUS)
    root = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["buraq:2112"]}]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{live.server.port}"]}]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    base = f"http://127.0.0.1:{free_port()}"
    with open(root / "prometheus.log", "w") as log:
        process = subprocess.Popen([PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address={base[7:]}"],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or _ready(base), message="Prometheus ready")
        assert process.poll() is None, (root / "prometheus.log").read_text()
        wait_for(lambda: _value(base, 'up{job="buraq"}') == 1, message="the first scrape of buraq")
        assert live.project.buraq("enqueue", live.good, input="{}\n" * AFTER).returncode == 0
        yield base
    finally:
        process.terminate()
        process.wait(30)


def test_prometheus_counts_every_task_buraq_processed(live: Live, prometheus: str) -> None:
    # Given tasks enqueued before and while Prometheus scrapes, When it scrapes with the repo's config,
    # Then PromQL sees exactly as many processed tasks as were enqueued, and each dead-lettered one.
    processed = f'sum(buraq_tasks_processed_total{{pipeline="{live.good}"}})'
    wait_for(lambda: _value(prometheus, processed) == BEFORE + AFTER, timeout=60,
             message=f"Prometheus to count {BEFORE + AFTER} processed tasks")
    assert _value(prometheus, f'sum(buraq_tasks_dlq_total{{pipeline="{live.bad}", reason="handler_error"}})') == FAILING
    assert _value(prometheus, f'sum(buraq_tasks_failed_total{{pipeline="{live.bad}"}})') == FAILING * 2
    assert _value(prometheus, f'max(buraq_dlq_depth{{pipeline="{live.bad}"}})') == FAILING
    assert _value(prometheus, f'sum(buraq_worker_slots{{pipeline="{live.good}"}})') == 10  # the default pool


def _as_grafana_would(expr: str, pipelines: str) -> str:
    return expr.replace("$pipeline", pipelines).replace("$__rate_interval", "1m")


def test_every_dashboard_query_returns_data_from_the_live_prometheus(live: Live, prometheus: str) -> None:
    both = f"{live.good}|{live.bad}"  # the regex Grafana builds for "All"
    wait_for(lambda: _value(prometheus, f'sum(buraq_tasks_processed_total{{pipeline="{live.good}"}})')
             == BEFORE + AFTER, timeout=60, message="the second batch scraped")
    for title, expr in _queries():
        if expr.startswith("label_values"):
            pipelines = {series["metric"]["pipeline"] for series in _query(prometheus, "buraq_worker_slots")}
            assert {live.good, live.bad} <= pipelines, f"{title}: {pipelines}"
            continue
        result = _query(prometheus, _as_grafana_would(expr, both))
        if not _names_in(expr)[0] <= NEEDS_A_DEAD_WORKER:
            assert result, f"{title}: {expr} returned no series"
    # The panels show real numbers, not just series: throughput and latency of the second batch.
    throughput = _as_grafana_would(_query_of("Throughput", "processed"), live.good)
    assert wait_for(lambda: (_value(prometheus, throughput) or 0) > 0, message="a throughput above 0")
    p50 = _value(prometheus, _as_grafana_would(_query_of("Enqueue-to-start latency", "p50"), live.good))
    assert p50 is not None and math.isfinite(p50) and p50 > 0


def _query_of(title: str, legend: str) -> str:
    (panel,) = [panel for panel in _dashboard()["panels"] if panel["title"] == title]
    (target,) = [target for target in panel["targets"] if target["legendFormat"] == legend]
    return target["expr"]


def test_dashboard_queries_use_only_metrics_and_labels_buraq_exports(live: Live) -> None:
    exported, labels = _exported(live.server.metrics())
    for title, expr in _queries():
        metrics, used_labels = _names_in(expr)
        assert metrics, f"{title}: {expr} names no metric"
        assert metrics <= exported, f"{title}: {sorted(metrics - exported)} not exported (a function? add it to PROMQL_WORDS)"
        assert used_labels <= labels, f"{title}: labels {sorted(used_labels - labels)} not exported"


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_scrape_config() -> None:
    result = subprocess.run([PROMTOOL, "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)  # type: ignore[list-item]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_a_live_metrics_page(live: Live) -> None:
    text = live.server.metrics()
    assert "buraq_tasks_dlq_total{" in text and "buraq_task_latency_seconds_bucket{" in text
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)  # type: ignore[list-item]
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stdout + result.stderr
