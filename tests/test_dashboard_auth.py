"""Who may read the dashboard and who may change things through it (docs/operations.md, "Who may use
it"), checked with real `buraq serve` processes and real HTTP; then the pure functions it draws with."""

from __future__ import annotations

import signal
import socket

import pytest

from buraq.errors import BuraqError
from buraq.web.auth import Policy
from buraq.web.charts import line_chart, nice_ceiling
from buraq.web.history import quantile
from conftest import Project, Server, free_port, wait_for
from web_helpers import TOKEN, Web, served


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _no_token_env(project: Project, **extra: str) -> dict[str, str]:
    env = project.env(**extra)
    if "BURAQ_DASHBOARD_TOKEN" not in extra:
        env.pop("BURAQ_DASHBOARD_TOKEN", None)
    return env


def _serve_on(project: Project, host: str, *args: str, env: dict[str, str]) -> Server:
    """`buraq serve` on ``host`` (the last --listen wins over the helper's loopback one)."""
    port = free_port()
    server = project.serve("--listen", f"{host}:{port}", *args, env=env)
    server.port = port
    return server


@pytest.fixture
def dead_letter(recorder: Project, redis) -> tuple[Project, str, str]:
    """A pipeline whose one task was rejected into the DLQ; (project, pipeline, task id)."""
    name = recorder.pipeline("rejects", "handler: test.reject\n")
    [task] = recorder.buraq("enqueue", name, '{"n": 1}').stdout.split()
    done = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert done.returncode == 0, done.stderr
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 1
    return recorder, name, task


def test_an_open_address_without_a_token_is_refused_before_anything_starts(recorder: Project, redis) -> None:
    name = recorder.pipeline("exposed", "handler: test.ok\n")
    port = free_port()
    refused = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--listen", f"0.0.0.0:{port}",
                             env=_no_token_env(recorder), timeout=30)
    assert refused.returncode == 1
    assert "refusing to serve the dashboard on 0.0.0.0, which is not loopback, without a token" in refused.stderr
    assert "--dashboard off" in refused.stderr  # the message says how to get /metrics alone
    assert not _listening(port) and "metrics on http" not in refused.stderr + refused.stdout
    assert redis.exists(f"buraq:{{{name}}}:tasks") == 0  # no worker started: no group, no stream


def test_dashboard_off_serves_metrics_alone_even_on_an_open_address(recorder: Project) -> None:
    recorder.pipeline("exposed", "handler: test.ok\n")
    server = _serve_on(recorder, "0.0.0.0", "--dashboard", "off", env=_no_token_env(recorder))
    try:
        server.wait_ready()
        web = Web(server.port)
        assert web.get("/metrics").status == 200 and web.get("/healthz").json() == {"status": "ok"}
        for path in ("/", "/api/overview", "/login"):
            off = web.get(path)
            assert off.status == 404 and "the dashboard is off" in off.json()["error"]
    finally:
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("how", ["env", "file"])
def test_a_short_token_is_refused(recorder: Project, how: str) -> None:
    recorder.pipeline("short", "handler: test.ok\n")
    args = ["serve", "pipelines", "--plugins-dir", "plugins", "--listen", f"127.0.0.1:{free_port()}"]
    env = _no_token_env(recorder)
    if how == "env":
        env["BURAQ_DASHBOARD_TOKEN"] = "only-15-chars.."
    else:
        (recorder.root / "token").write_text("only-15-chars..\n")
        args += ["--dashboard-token-file", "token"]
    refused = recorder.buraq(*args, env=env, timeout=30)
    assert refused.returncode == 1 and "at least 16 characters" in refused.stderr
    assert "only-15-chars" not in refused.stderr  # the secret is never echoed


def test_with_a_token_reading_needs_a_login_or_the_bearer_header(recorder: Project) -> None:
    recorder.pipeline("guarded", "handler: test.ok\n")
    _, web = served(recorder, env=recorder.env(BURAQ_DASHBOARD_TOKEN=TOKEN))
    # Open without a token: Prometheus and health checks
    assert web.get("/metrics").status == 200 and web.get("/healthz").status == 200
    # Closed: the API says 401, pages send you to the login form
    for path in ("/api/overview", "/api/session", "/api/bench"):
        denied = web.get(path)
        assert denied.status == 401 and "authentication required" in denied.json()["error"]
    home = web.get("/")
    assert home.status == 303 and home.headers["Location"] == "/login"
    form = web.get("/login")
    assert form.status == 200 and 'name="token"' in form.text
    assert web.get("/static/app.js").status == 200  # the page's code holds no secrets
    # A wrong token is refused and sets no cookie
    wrong = web.login("not-the-token-at-all-000000")
    assert wrong.status == 401 and "Set-Cookie" not in wrong.headers and web.cookie is None
    # The right one sets a strict, script-proof cookie that does not hold the token
    right = web.login(TOKEN)
    assert right.status == 303 and right.headers["Location"] == "/"
    set_cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    assert TOKEN not in set_cookie
    assert web.get("/api/overview").status == 200 and "<title>buraq dashboard" in web.get("/").text
    assert web.get_json("/api/session")["token_required"] is True
    # A forged cookie is nobody
    assert Web(web.port, cookie="buraq_session=" + "0" * 64).get("/api/overview").status == 401
    # Scripts use the bearer header
    assert Web(web.port, headers={"Authorization": f"Bearer {TOKEN}"}).get("/api/overview").status == 200
    assert Web(web.port, headers={"Authorization": "Bearer nope-nope-nope-nope"}).get("/api/overview").status == 401
    # Logging out clears the cookie
    out = web.request("POST", "/logout")
    assert out.status == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert web.get("/api/overview").status == 401


def test_the_token_file_option_works(recorder: Project) -> None:
    recorder.pipeline("guarded", "handler: test.ok\n")
    (recorder.root / "token").write_text(TOKEN + "\n")
    _, web = served(recorder, "--dashboard-token-file", "token", env=_no_token_env(recorder))
    assert web.get("/api/overview").status == 401
    assert Web(web.port, headers={"Authorization": f"Bearer {TOKEN}"}).get("/api/overview").status == 200


def test_a_change_needs_the_csrf_header_our_origin_and_json(dead_letter, redis) -> None:
    project, name, task = dead_letter
    _, web = served(project, env=project.env(BURAQ_DASHBOARD_TOKEN=TOKEN))
    path = f"/api/pipelines/{name}/dlq/replay"
    dlq, stream = f"buraq:{{{name}}}:dlq", f"buraq:{{{name}}}:tasks"
    before = redis.xlen(stream)
    anonymous = web.post_json(path, {"all": True})
    assert anonymous.status == 401
    assert web.login(TOKEN).status == 303
    csrf = web.csrf()
    origin = f"http://127.0.0.1:{web.port}"
    for headers, status, why in [
            ({}, 403, "missing or wrong X-Buraq-CSRF header"),
            ({"csrf": "0" * 64}, 403, "missing or wrong X-Buraq-CSRF header"),
            ({"csrf": csrf, "Origin": "http://evil.example"}, 403, "cross-site request refused"),
            ({"csrf": csrf, "Origin": f"http://localhost:{web.port}"}, 403, "cross-site request refused"),
            ({"csrf": csrf, "Sec_Fetch_Site": "cross-site"}, 403, "cross-site request refused"),
            ({"csrf": csrf, "Sec_Fetch_Site": "same-site"}, 403, "cross-site request refused"),
            ({"csrf": csrf, "Origin": origin, "Content_Type": "text/plain"}, 415, "Content-Type: application/json"),
            ({"csrf": csrf, "Content_Type": "application/x-www-form-urlencoded"}, 415, "application/json")]:
        answer = web.post_json(path, {"all": True}, **headers)
        assert answer.status == status and why in answer.json()["error"], (headers, answer.status, answer.text)
        assert redis.xlen(dlq) == 1 and redis.xlen(stream) == before  # nothing replayed
    # From the page itself: replayed (and rejected again by its handler, which the test does not need)
    ok = web.post_json(path, {"ids": [task]}, csrf=csrf, Origin=origin, Sec_Fetch_Site="same-origin")
    assert ok.status == 200 and ok.json() == {"replayed": [task], "skipped": []}
    assert redis.xlen(stream) == before + 1
    # Behind a TLS-terminating proxy the page is https:// and serve sees http: still our own origin
    proxied = Web(web.port, cookie=web.cookie, headers={"Host": "buraq.example"})
    behind = proxied.post_json(f"/api/pipelines/{name}/dlq/purge", {"reason": "no-such-reason"}, csrf=csrf,
                               Origin="https://buraq.example", Sec_Fetch_Site="same-origin")
    assert behind.status == 200 and behind.json() == {"deleted": 0}, behind.text
    older = proxied.post_json(f"/api/pipelines/{name}/dlq/purge", {"reason": "no-such-reason"}, csrf=csrf,
                              Origin="https://buraq.example")  # a browser that sends no Sec-Fetch-Site
    assert older.status == 200, older.text
    foreign = proxied.post_json(f"/api/pipelines/{name}/dlq/purge", {"all": True}, csrf=csrf,
                                Origin="https://evil.example")
    assert foreign.status == 403 and redis.xlen(dlq) == 1
    # A script with the bearer header needs no CSRF token (there is no ambient credential to ride on)
    wait_for(lambda: redis.xlen(dlq) == 1, message="the task to be rejected again")
    script = Web(web.port, headers={"Authorization": f"Bearer {TOKEN}"})
    purged = script.post_json(f"/api/pipelines/{name}/dlq/purge", {"ids": [task]})
    assert purged.status == 200 and purged.json() == {"deleted": 1}


def test_without_a_token_only_loopback_host_names_are_answered(dead_letter, redis) -> None:
    project, name, task = dead_letter
    _, web = served(project, env=_no_token_env(project))
    rebound = Web(web.port, headers={"Host": f"evil.example:{web.port}"})
    for path in ("/", "/api/overview", "/api/session", f"/api/pipelines/{name}/dlq"):
        answer = rebound.get(path)
        assert answer.status == 403 and "loopback host names only" in answer.json()["error"], path
    assert Web(web.port, headers={"Host": f"127.0.0.1.evil.example:{web.port}"}).get("/api/overview").status == 403
    assert rebound.post_json(f"/api/pipelines/{name}/dlq/purge", {"all": True}).status == 403
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 1
    # Metrics hold no payloads: open to any Host
    assert rebound.get("/metrics").status == 200 and rebound.get("/healthz").status == 200
    for host in (f"localhost:{web.port}", f"127.0.0.1:{web.port}", f"[::1]:{web.port}", "localhost"):
        assert Web(web.port, headers={"Host": host}).get("/api/overview").status == 200, host
    # Loopback without a token: anyone on this host reads, but a change still needs the page's CSRF token
    assert web.get("/").status == 200 and web.get_json("/api/session")["token_required"] is False
    assert web.post_json(f"/api/pipelines/{name}/dlq/purge", {"all": True}).status == 403
    assert Web(web.port, headers={"Authorization": f"Bearer {TOKEN}"}).post_json(
        f"/api/pipelines/{name}/dlq/purge", {"all": True}).status == 403  # no token: a bearer proves nothing
    assert redis.xlen(f"buraq:{{{name}}}:dlq") == 1
    purged = web.post_json(f"/api/pipelines/{name}/dlq/purge", {"ids": [task]}, csrf=web.csrf())
    assert purged.json() == {"deleted": 1} and redis.xlen(f"buraq:{{{name}}}:dlq") == 0


def test_policy_refuses_open_addresses_without_a_token() -> None:
    for host in ("0.0.0.0", "::", "10.1.2.3", "buraq.example"):
        with pytest.raises(BuraqError, match="not loopback, without a token"):
            Policy.for_listener(host, None)
    for host in ("127.0.0.1", "127.9.9.9", "::1", "localhost"):
        assert Policy.for_listener(host, None).token is None
    assert Policy.for_listener("0.0.0.0", TOKEN).token == TOKEN
    with pytest.raises(BuraqError, match="at least 16"):
        Policy.for_listener("127.0.0.1", "x" * 15)


def test_quantile_interpolates_like_histogram_quantile() -> None:
    before = {0.1: 1.0, 0.5: 1.0, 1.0: 1.0, float("inf"): 1.0}  # one old observation, not in the window
    after = {0.1: 3.0, 0.5: 7.0, 1.0: 11.0, float("inf"): 11.0}  # 2 in (0, .1], 4 in (.1, .5], 4 in (.5, 1]
    # rank 5 of 10 falls in (0.1, 0.5], which holds ranks 2..6: 0.1 + 0.4 * (5 - 2) / 4
    assert quantile(0.5, before, after) == pytest.approx(0.4)
    # rank 9.9 falls in (0.5, 1.0], ranks 6..10: 0.5 + 0.5 * 3.9 / 4
    assert quantile(0.99, before, after) == pytest.approx(0.9875)
    # rank 1 in the first bucket, whose lower edge is 0: 0.1 * 1 / 2
    assert quantile(0.1, before, after) == pytest.approx(0.05)
    # Ranks in +Inf give the highest finite bound, as Prometheus does
    assert quantile(0.9, {}, {0.1: 0.0, 1.0: 1.0, float("inf"): 4.0}) == 1.0
    assert quantile(0.5, after, after) is None and quantile(0.5, {}, {}) is None


@pytest.mark.parametrize("value, top", [(0, 1.0), (-3, 1.0), (0.0012, 0.002), (0.05, 0.05), (0.3, 0.5),
                                        (1, 1.0), (1.5, 2.0), (7, 10.0), (10, 10.0), (11, 20.0), (150, 200.0),
                                        (999, 1000.0), (1001, 2000.0), (4.2e6, 5e6)])
def test_nice_ceiling_is_one_two_or_five_times_a_power_of_ten(value: float, top: float) -> None:
    assert nice_ceiling(value) == pytest.approx(top)


def test_line_chart_breaks_lines_at_gaps_and_escapes_text() -> None:
    svg = line_chart("a <b> & c", [0.0, 1.0, 2.0, 3.0, 4.0], {"x<y": [1.0, None, 2.0, 3.0, None]}, "/s")
    assert svg.count("<polyline") == 2  # [1] alone (drawn as a dot), then [2, 3]
    assert "a &lt;b&gt; &amp; c" in svg and 'data-series="x&lt;y"' in svg and "<b>" not in svg
    assert ">5/s<" in svg  # the axis top: nice_ceiling(3) = 5
    # Big numbers stay short enough for the axis margin (a clipped "250,000" would read "50,000")
    wide = line_chart("t", [0.0, 1.0], {"a": [120_000.0, 400_000.0]}, "/s")
    assert ">500k/s<" in wide and ">250k/s<" in wide and "00,000" not in wide
    slow = line_chart("t", [0.0, 1.0], {"p99": [12_000.0, 40_000.0]}, "ms")
    assert ">50s<" in slow and ">25s<" in slow
    assert ">2.5M<" in line_chart("t", [0.0, 1.0], {"depth": [3e6, 4e6]}) and ">2,500ms<" in line_chart(
        "t", [0.0, 1.0], {"p50": [4000.0, 4500.0]}, "ms")
    empty = line_chart("nothing yet", [], {"a": []})
    assert "<polyline" not in empty and empty.endswith("</svg>")
