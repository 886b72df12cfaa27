"""The dashboard in a real browser (headless Chromium driven by Playwright) against a real `buraq serve`:
it loads cleanly, its charts move while tasks flow, a dead letter can be inspected and replayed, and
the login form works. Screenshots land in build/screenshots/ for people (and CI artefacts)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buraq import Client
from conftest import ROOT, Project, wait_for
from web_helpers import TOKEN, enqueue, fixable_project, served

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "build" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                             "(pip install -e '.[test]')")
expect = sync_api.expect
if not CHROMIUM.exists():
    pytest.skip(f"no system Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

BENCH = {"finished_at": "2025-01-01T12:00:00Z", "machine": {"cpu": "test", "cores": 2, "python": "3.11",
                                                             "redis": "7", "buraq": "0.1.0"},
         "enqueue": {"rate": 40000.0}, "drain": [{"handler": "bench.noop", "processes": 1, "rate": 9000.0}],
         "latency": {"rate": 500, "p50_ms": 1.2, "p95_ms": 3.4, "p99_ms": 7.5}}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


class Watched:
    """A page whose console errors, uncaught exceptions and failed requests are collected."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    page = Watched(browser)
    yield page
    page.context.close()


def _with_bench_result(project: Project) -> None:
    (project.root / ".buraq" / "bench").mkdir(parents=True, exist_ok=True)
    (project.root / ".buraq" / "bench" / "latest.json").write_text(json.dumps(BENCH))


def _total(page: Any, name: str) -> float:
    text = page.locator(f'article[data-pipeline="{name}"] [data-testid="total"]').inner_text()
    return float(text.replace(",", "")) if text.replace(",", "").isdigit() else -1.0


def test_the_page_loads_cleanly_and_its_numbers_and_charts_move(project: Project, watched: Watched) -> None:
    name = fixable_project(project)  # and no benchmark result yet: the page says so, without a 404
    server, _ = served(project)
    page = watched.page
    page.goto(f"http://127.0.0.1:{server.port}/")
    card = page.locator(f'article[data-pipeline="{name}"]')
    card.wait_for()
    assert "No results yet" in page.inner_text('[data-testid="bench"]')
    assert page.title() == "buraq dashboard" and "1 pipeline(s)" in page.inner_text("#meta")
    assert "live" in (page.get_attribute("#status", "class") or "")

    stop = threading.Event()

    def produce() -> None:  # a steady trickle, so the rates and charts have something to show
        with Client(project.redis_url, pipelines=project.pipelines, plugins_dir=project.plugins) as client:
            while not stop.wait(0.1):
                client.enqueue_many(name, ({"n": i} for i in range(20)))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        seen = {_total(page, name)}
        wait_for(lambda: seen.add(_total(page, name)) or len(seen - {-1.0, 0.0}) >= 3, timeout=20,
                 interval=0.3, message="the processed total on the page to rise again and again")
        throughput = card.locator('[data-chart="throughput"]')
        first = throughput.inner_html()
        page.wait_for_function(
            "name => document.querySelector(`article[data-pipeline='${name}'] [data-testid=processed]`)"
            ".textContent.replace(/[–,]/g, '') > 0", arg=name)
        wait_for(lambda: throughput.inner_html() != first, timeout=10, interval=0.3, message="the chart to redraw")
        assert card.locator('[data-chart="throughput"] svg polyline[data-series="processed"]').count() >= 1
        assert card.locator("svg.chart").count() == 5
        watched.shot("dashboard.png")
    finally:
        stop.set()
        producer.join(10)
    numbers = sorted(seen - {-1.0})
    assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
    assert watched.problems == []


def test_a_dead_letter_is_inspected_and_replayed_from_the_page(project: Project, watched: Watched) -> None:
    name = fixable_project(project)
    _with_bench_result(project)
    failing = enqueue(project, name, [{"n": i, "fail": "ValueError", "order": f"A-{i}"} for i in range(3)])
    server, web = served(project)
    wait_for(lambda: web.get_json(f"/api/pipelines/{name}/dlq")["total"] == 3, message="three dead letters")
    page = watched.page
    page.goto(f"http://127.0.0.1:{server.port}/")
    card = page.locator(f'article[data-pipeline="{name}"]')
    page.wait_for_function("() => document.querySelectorAll('#bench-body svg rect').length === 5")
    assert "40k/s" in page.inner_text("#bench-body") and "No results yet" not in page.inner_text("#bench-body")
    summary = card.locator('[data-testid="dead-letters"] summary')
    summary.click()
    expect(summary).to_have_text("Dead letters (3)")
    patterns = card.locator('[data-testid="dead-letters"] table').first.locator("tbody tr")
    expect(patterns).to_have_count(1)
    expect(patterns.locator("td")).to_have_text(["handler_error", "ValueError", "3", re.compile("failed with"),
                                                 "Replay these"])
    task = failing[1]
    row = card.locator("tbody tr[data-entry]", has_text=task)
    row.locator('[data-testid="inspect-entry"]').click()
    dialog = page.locator('[data-testid="inspect"]')
    dialog.wait_for(state="visible")
    assert json.loads(page.inner_text('[data-testid="inspect-payload"]')) == {
        "n": 1, "fail": "ValueError", "order": "A-1"}
    assert "ValueError: task 1 failed with ValueError" in page.inner_text("#inspect-traceback")
    assert task in page.inner_text("#inspect-title")
    watched.shot("dlq-inspect.png")

    (project.records / "fixed").write_text("")  # the downstream is fixed
    confirms: list[str] = []
    page.once("dialog", lambda d: (confirms.append(d.message), d.accept()))
    dialog.locator('[data-testid="replay"]').click()
    page.wait_for_function("() => document.querySelector('[data-testid=inspect-result]').textContent !== ''")
    assert page.inner_text('[data-testid="inspect-result"]') == f"replayed: {task}"
    assert confirms and confirms[0].startswith("Replay")
    wait_for(lambda: f"{task} 1" in project.recorded("ok"), message="the replayed task to succeed")
    page.locator("#inspect-close").click()
    expect(card.locator("tr[data-entry]")).to_have_count(2)
    expect(summary).to_have_text("Dead letters (2)")
    # The numbers above say the same within a sample or two: one processed, two dead-lettered
    wait_for(lambda: _total(page, name) == 1 and card.locator('b[data-testid="dlq"]').inner_text() == "2",
             timeout=10, interval=0.2, message="the overview to show the replay")
    watched.shot("dlq-after-replay.png")
    assert watched.problems == []


def test_login_with_the_token_in_the_browser(project: Project, watched: Watched) -> None:
    name = fixable_project(project)
    _with_bench_result(project)
    server, _ = served(project, env=project.env(BURAQ_DASHBOARD_TOKEN=TOKEN))
    page = watched.page
    page.goto(f"http://127.0.0.1:{server.port}/")
    assert page.url.endswith("/login")
    page.fill('input[name="token"]', "wrong-token-wrong-token")
    with page.expect_response("**/login") as refused:
        page.click('button[type="submit"]')
    assert refused.value.status == 401
    page.wait_for_load_state()
    assert page.url.endswith("/login") and page.locator('input[name="token"]').is_visible()
    assert all("401" in problem for problem in watched.problems)  # the wrong token's 401 was the point
    watched.problems.clear()
    page.fill('input[name="token"]', TOKEN)
    page.click('button[type="submit"]')
    page.locator(f'article[data-pipeline="{name}"]').wait_for()
    assert page.url == f"http://127.0.0.1:{server.port}/"
    assert page.locator("#logout button").is_visible()
    cookies = watched.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("buraq_session", True, "Strict")]
    watched.shot("dashboard-logged-in.png")
    page.click("#logout button")
    page.wait_for_url("**/login")
    assert watched.context.cookies() == []
    assert watched.problems == []

