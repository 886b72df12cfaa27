"""Deliver each task to an HTTP endpoint: the ``http.request`` handler.

Pipeline options (OPTIONS_SCHEMA has them all): ``url`` (required), ``method`` (POST),
``headers``, ``timeout`` (10s per network step), ``body`` (payload | task | none),
``follow_redirects`` (false), ``retry_statuses`` ([408, 429]).

Outcomes: a 2xx reply returns its body (decoded JSON when the reply says it is JSON, else
text, None when empty). A 5xx, a status in ``retry_statuses``, a connection error or a
timeout raises HttpError, so buraq retries with backoff. Any other 4xx (and an unfollowed
3xx) raises ``buraq.Reject``: the task is dead-lettered at once with reason ``rejected``.
Errors carry the method, the URL without credentials or query, the status and a short
excerpt of the reply; never a request header.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

import buraq
from buraq_http.options import HANDLER, OPTIONS_SCHEMA, Settings, read_options
from buraq_http import pool
from buraq_http.pool import close

__all__ = ["HttpError", "OPTIONS_SCHEMA", "close", "request"]

EXCERPT_CHARS = 200


class HttpError(Exception):
    """A failure worth retrying: a 5xx or retryable 4xx reply, a connection error or a timeout."""


async def request(task: buraq.Task) -> Any:
    """Send ``task`` to ``options.url``; return the 2xx reply's body, raise for anything else."""
    settings = read_options(task.options)
    where = f"{settings.method} {_safe_url(settings.url)}"
    content = _body(task, settings)
    headers = httpx.Headers({"Buraq-Task-Id": task.id, "Buraq-Attempt": str(task.attempt)})
    if content is not None:
        headers["Content-Type"] = "application/json"
    headers.update(settings.headers)  # the pipeline's own headers win, whatever their case
    try:
        response = await pool.client().request(
            settings.method, settings.url, content=content, headers=headers,
            timeout=settings.timeout, follow_redirects=settings.follow_redirects)
    except httpx.LocalProtocolError:  # our own request is not valid HTTP; its message may quote a header value
        raise buraq.Reject(f"{where}: the request is not valid HTTP (check the headers)") from None
    except httpx.TimeoutException as exc:
        raise HttpError(f"{where}: timed out after {settings.timeout:g}s ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:  # connect, read, write, protocol and proxy errors
        raise HttpError(f"{where}: {type(exc).__name__}: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise buraq.Reject(f"{where}: invalid URL: {exc}") from None
    return _outcome(where, response, settings)


def _body(task: buraq.Task, settings: Settings) -> bytes | None:
    if settings.body == "none":
        return None
    value = task.payload if settings.body == "payload" else {
        "id": task.id, "pipeline": task.pipeline, "attempt": task.attempt, "payload": task.payload}
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise buraq.Reject(f"{HANDLER}: the payload cannot be sent as JSON: {exc}") from None


def _outcome(where: str, response: httpx.Response, settings: Settings) -> Any:
    status = response.status_code
    if 200 <= status < 300:
        return _decoded(response)
    summary = f"{where}: HTTP {status} {response.reason_phrase}".rstrip()
    excerpt = _excerpt(response.text)
    if excerpt:
        summary += f": {excerpt}"
    if status >= 500 or status in settings.retry_statuses:
        retry_after = response.headers.get("Retry-After")
        raise HttpError(summary + (f" (Retry-After: {retry_after[:40]})" if retry_after else ""))
    if 300 <= status < 400:
        raise buraq.Reject(summary + " (a redirect; set follow_redirects: true to follow it)")
    raise buraq.Reject(summary)


def _decoded(response: httpx.Response) -> Any:
    """JSON when the reply says so (and parses), else its text; None for an empty body."""
    if not response.content:
        return None
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def _safe_url(url: str) -> str:
    """The URL without user:password@, query or fragment: those may hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@buraq.hookimpl
def register_handlers(register: Callable[..., None]) -> None:
    register(HANDLER, request, options_schema=OPTIONS_SCHEMA)  # `buraq validate` checks options too
