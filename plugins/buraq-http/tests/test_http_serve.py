"""End to end: the installed buraq-http plugin under a real `buraq serve --burst`, real Redis, real HTTP server."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import redis as redis_sync

import buraq
from http_fixtures import Endpoint, buraq as run_buraq, unique
from http_fixtures import endpoint, redis, redis_url  # noqa: F401  (fixtures)


def write_pipeline(root: Path, name: str, body: str) -> str:
    folder = root / "pipelines"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(f"name: {name}\n" + textwrap.dedent(body))
    return name


def test_serve_delivers_retries_and_dead_letters_by_status(tmp_path: Path, endpoint: Endpoint, redis_url: str,
                                                          redis: redis_sync.Redis,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Given four http.request pipelines on the test server, with a token from the environment
    monkeypatch.setenv("HOOK_TOKEN", "tok-3fa9")
    retry = "retry: {attempts: 4, backoff: {initial: 10ms, max: 50ms}}"
    paths = {"ok": "/echo", "flaky": "/flaky/2", "gone": "/status/410", "down": "/status/503"}
    pipelines = {
        kind: write_pipeline(tmp_path, unique(f"http-{kind}"), f"""
            handler: http.request
            {retry}
            options:
              url: {endpoint.url(path)}
              headers: {{Authorization: "Bearer ${{HOOK_TOKEN}}"}}
            """)
        for kind, path in paths.items()
    }
    with buraq.Client(redis_url=redis_url, pipelines=tmp_path / "pipelines", plugins_dir=None) as client:
        ids = {kind: client.enqueue(name, {"kind": kind, "n": 1}) for kind, name in pipelines.items()}

    # When buraq serve runs them until every pipeline is idle
    result = run_buraq(tmp_path, redis_url, "serve", "pipelines", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr

    # Then the 2xx task was delivered once, with the payload and the token, and acknowledged
    def attempts(kind: str) -> list[str]:  # (task ids are stream entry ids: two streams may share one)
        return [seen.headers["Buraq-Attempt"] for seen in endpoint.seen
                if seen.path == paths[kind] and seen.headers["Buraq-Task-Id"] == ids[kind]]

    assert attempts("ok") == ["1"]
    [delivered] = [seen for seen in endpoint.seen if seen.path == "/echo"]
    assert json.loads(delivered.body) == {"kind": "ok", "n": 1}
    assert delivered.headers["Authorization"] == "Bearer tok-3fa9"
    # And the 503-twice task was retried, then succeeded
    assert attempts("flaky") == ["1", "2", "3"]
    for kind in ("ok", "flaky"):
        stream = f"buraq:{{{pipelines[kind]}}}"
        assert redis.xlen(f"{stream}:dlq") == 0, kind
        assert redis.xpending(f"{stream}:tasks", "buraq")["pending"] == 0, kind

    # And the 410 was dead-lettered at once as rejected, with the status and no token
    assert attempts("gone") == ["1"]
    [(_, gone)] = redis.xrange(f"buraq:{{{pipelines['gone']}}}:dlq")
    assert gone[b"reason"] == b"rejected" and gone[b"error_type"] == b"Reject"
    assert gone[b"attempts"] == b"1" and gone[b"id"] == ids["gone"].encode()
    assert gone[b"error"].startswith(f"POST http://127.0.0.1:{endpoint.port}/status/410: HTTP 410 Gone: nope".encode())
    # And a 503 every time used up its attempts, then was dead-lettered as a handler error
    assert attempts("down") == ["1", "2", "3", "4"]
    [(_, down)] = redis.xrange(f"buraq:{{{pipelines['down']}}}:dlq")
    assert down[b"reason"] == b"handler_error" and down[b"error_type"] == b"HttpError"
    assert b"HTTP 503" in down[b"error"] and down[b"attempts"] == b"4"
    for fields in (gone, down):
        assert not any(b"tok-3fa9" in value for value in fields.values())
    assert "tok-3fa9" not in result.stderr + result.stdout
