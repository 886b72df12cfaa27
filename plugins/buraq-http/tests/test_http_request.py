"""http.request called directly, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
import pytest

import buraq
import buraq_http
from buraq.plugins import load_plugins
from buraq_http import pool
from http_fixtures import Endpoint
from http_fixtures import endpoint  # noqa: F401  (a fixture)


def task(payload: Any = None, attempt: int = 1, **options: Any) -> buraq.Task:
    return buraq.Task(id="1700000000000-0", payload=payload, attempt=attempt, pipeline="hooks", options=options)


def run(*coroutines: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls one after another on one fresh loop, closing its client at the end, as a worker would."""
    async def main() -> list[Any]:
        try:
            return [await make() for make in coroutines]
        finally:
            await buraq_http.close()
    return asyncio.run(main())


def call(one: buraq.Task) -> Any:
    return run(lambda: buraq_http.request(one))[0]


def test_posts_the_payload_as_json_and_returns_the_json_reply(endpoint: Endpoint) -> None:
    result = call(task({"order": 7, "name": "naïve"}, attempt=2, url=endpoint.url("/echo")))
    assert result["method"] == "POST"
    assert result["json"] == {"order": 7, "name": "naïve"}
    [seen] = endpoint.seen
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Buraq-Task-Id"] == "1700000000000-0"
    assert seen.headers["Buraq-Attempt"] == "2"
    assert json.loads(seen.body.decode("utf-8")) == {"order": 7, "name": "naïve"}


def test_body_task_sends_the_envelope_and_method_and_headers_apply(endpoint: Endpoint) -> None:
    result = call(task([1, 2], url=endpoint.url("/echo"), method="PUT", body="task",
                       headers={"Authorization": "Bearer s3cret", "content-type": "application/vnd.x+json"}))
    assert result["method"] == "PUT"
    assert result["json"] == {"id": "1700000000000-0", "pipeline": "hooks", "attempt": 1, "payload": [1, 2]}
    [seen] = endpoint.seen
    assert seen.headers["Authorization"] == "Bearer s3cret"
    # The pipeline's header replaced the default whatever its case: sent once.
    assert [k for k in seen.headers if k.lower() == "content-type"] == ["content-type"]
    assert seen.headers["content-type"] == "application/vnd.x+json"


def test_get_sends_no_body_and_text_and_empty_replies_are_returned(endpoint: Endpoint) -> None:
    assert call(task({"ignored": True}, url=endpoint.url("/text"), method="GET")) == "plain ✓"
    assert call(task({"x": 1}, url=endpoint.url("/empty"))) is None
    assert endpoint.seen[0].body == b"" and "Content-Type" not in endpoint.seen[0].headers


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_server_errors_and_throttling_raise_a_retryable_error(endpoint: Endpoint, status: int) -> None:
    with pytest.raises(buraq_http.HttpError) as caught:
        call(task({}, url=endpoint.url(f"/status/{status}?token=hidden"), headers={"Authorization": "Bearer s3cret"}))
    message = str(caught.value)
    assert message.startswith(f"POST http://127.0.0.1:{endpoint.port}/status/{status}: HTTP {status}")
    assert "nope: xxx" in message and "(Retry-After: 7)" in message
    assert len(message) < 400  # an excerpt, not the whole 1000-byte body
    assert "s3cret" not in message and "hidden" not in message
    assert not isinstance(caught.value, buraq.Reject)


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
def test_other_client_errors_reject(endpoint: Endpoint, status: int) -> None:
    with pytest.raises(buraq.Reject, match=rf"HTTP {status} .*nope") as caught:
        call(task({}, url=endpoint.url(f"/status/{status}"), headers={"Authorization": "Bearer s3cret"}))
    assert "s3cret" not in str(caught.value)


def test_retry_statuses_make_a_4xx_retryable_and_can_turn_429_into_a_rejection(endpoint: Endpoint) -> None:
    with pytest.raises(buraq_http.HttpError, match="HTTP 409"):
        call(task({}, url=endpoint.url("/status/409"), retry_statuses=[409]))
    with pytest.raises(buraq.Reject, match="HTTP 429"):
        call(task({}, url=endpoint.url("/status/429"), retry_statuses=[]))


def test_redirects_reject_unless_followed(endpoint: Endpoint) -> None:
    with pytest.raises(buraq.Reject, match="HTTP 302 .*follow_redirects"):
        call(task({"a": 1}, url=endpoint.url("/redirect")))
    # A 302 turns the POST into a GET, as browsers and httpx do.
    assert call(task({"a": 1}, url=endpoint.url("/redirect"), follow_redirects=True))["method"] == "GET"


def test_a_refused_connection_is_retryable_and_hides_credentials() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(buraq_http.HttpError, match=rf"POST http://127.0.0.1:{port}/x: ConnectError") as caught:
        call(task({}, url=f"http://user:pa55@127.0.0.1:{port}/x?key=k3y"))
    assert "pa55" not in str(caught.value) and "k3y" not in str(caught.value)


def test_a_slow_server_times_out_retryably(endpoint: Endpoint) -> None:
    with pytest.raises(buraq_http.HttpError, match=r"timed out after 0.3s \(ReadTimeout\)"):
        call(task({}, url=endpoint.url("/slow/2"), timeout="300ms"))


@pytest.mark.parametrize(("options", "message"), [
    ({}, "bad options: options: 'url' is a required property"),
    ({"url": "ftp://x/y"}, "bad options: url: must be an http:// or https:// URL"),
    ({"url": "http://h", "method": "BREW"}, "bad options: method: 'BREW' is not one of"),
    ({"url": "http://h", "headers": {"Authorization": 12345}}, "headers.Authorization: header values must be strings"),
    ({"url": "http://h", "timeout": "soon"}, "bad options: timeout: must be a duration above 0"),
    ({"url": "http://h", "timeout": "0s"}, "bad options: timeout: must be a duration above 0"),
    ({"url": "http://h", "retry_statuses": [503]}, "retry_statuses.0: 503 is greater than the maximum of 499"),
    ({"url": "http://h", "verify": False}, "Additional properties are not allowed ('verify' was unexpected)"),
])
def test_bad_options_reject_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(buraq.Reject, match="^http.request: ") as caught:
        call(task({}, **options))
    assert message in str(caught.value)
    assert "12345" not in str(caught.value)


def test_a_header_value_with_a_line_break_rejects_without_showing_it(endpoint: Endpoint) -> None:
    # A token read from a file often keeps its newline; h11 would refuse it, quoting the token
    with pytest.raises(buraq.Reject, match="headers.Authorization: the value holds a line break") as caught:
        call(task({}, url=endpoint.url("/echo"), headers={"Authorization": "Bearer SECRET123\n"}))
    assert "SECRET123" not in str(caught.value)


def test_an_unserialisable_payload_rejects(endpoint: Endpoint) -> None:
    with pytest.raises(buraq.Reject, match="cannot be sent as JSON"):
        call(task({"when": object()}, url=endpoint.url("/echo")))
    assert endpoint.seen == []


def test_one_connection_pool_per_event_loop(endpoint: Endpoint) -> None:
    # Given several tasks on one loop: they share one client and its kept-alive connection
    url = endpoint.url("/echo")
    ports = run(*[lambda: buraq_http.request(task({}, url=url)) for _ in range(3)])
    assert len({answer["port"] for answer in ports}) == 1

    # And a client stays with its loop: the same on that loop, another on another loop
    async def current() -> object:
        return pool.client()

    async def is_fresh(previous: object) -> bool:
        try:
            return pool.client() is not previous
        finally:
            await buraq_http.close()

    loop = asyncio.new_event_loop()
    try:
        kept = loop.run_until_complete(current())
        assert loop.run_until_complete(current()) is kept
        assert asyncio.run(is_fresh(kept))
        loop.run_until_complete(buraq_http.close())
        assert kept.is_closed
        assert loop.run_until_complete(current()) is not kept  # a closed client is replaced
        loop.run_until_complete(buraq_http.close())
    finally:
        loop.close()


def test_options_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(buraq_http.OPTIONS_SCHEMA)
    assert buraq_http.OPTIONS_SCHEMA["required"] == ["url"]


def test_registered_as_http_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURAQ_PLUGINS", raising=False)
    handler = load_plugins(plugins_dir=None).handler("http.request")
    assert handler.function is buraq_http.request
    assert handler.is_async
    assert "buraq-http" in handler.plugin
