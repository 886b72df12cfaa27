"""The ``options:`` of an ``http.request`` pipeline: their JSON Schema, and reading them into settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

import buraq
from buraq.durations import DURATION_REGEX, parse_duration

HANDLER = "http.request"
DEFAULT_TIMEOUT = 10.0
# 408 (the server gave up waiting for the request) is as transient as a client-side timeout.
DEFAULT_RETRY_STATUSES = (408, 429)
_DURATION = {"oneOf": [{"type": "number", "exclusiveMinimum": 0},
                       {"type": "string", "pattern": DURATION_REGEX}]}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "http.request options",
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+",
                "description": "The endpoint, http:// or https://."},
        "method": {"enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], "default": "POST"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "Extra request headers; values may come from ${VAR} in the pipeline file."},
        "timeout": {**_DURATION, "description": "Per network step (connect, write, each read); default 10s."},
        "body": {"enum": ["payload", "task", "none"],
                 "description": "payload: the payload as JSON (default, except for GET and HEAD: none); "
                                "task: {id, pipeline, attempt, payload} as JSON; none: no body."},
        "follow_redirects": {"type": "boolean", "default": False},
        "retry_statuses": {"type": "array", "items": {"type": "integer", "minimum": 400, "maximum": 499},
                           "uniqueItems": True,
                           "description": "4xx statuses to retry rather than reject; default [408, 429]."},
    },
}

# Plain words instead of the raw message, which would echo a URL or header value (a token, a
# password) or a regular expression.
_PLAIN_WORDS = {"url": "must be an http:// or https:// URL with a host",
                "headers": "header values must be strings (quote numbers in YAML)",
                "timeout": "must be a duration above 0, such as 10s, 500ms or 2.5 (seconds)"}
_VALIDATOR = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)


@dataclass(frozen=True)
class Settings:
    url: str
    method: str
    headers: dict[str, str]
    timeout: float
    body: str
    follow_redirects: bool
    retry_statuses: frozenset[int]


def read_options(options: dict[str, Any]) -> Settings:
    """Validate ``options`` against OPTIONS_SCHEMA; bad options can never succeed, so they reject the task."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(options))
    if error is not None:
        path = [str(part) for part in error.absolute_path]
        message = _PLAIN_WORDS.get(path[0]) if path else None  # never echo a URL or header value
        raise buraq.Reject(f"{HANDLER}: bad options: {'.'.join(path) or 'options'}: {message or error.message}")
    for name, value in options.get("headers", {}).items():
        if any(bad in value for bad in "\r\n\x00"):  # h11 would refuse it with the value (a token) in its message
            raise buraq.Reject(f"{HANDLER}: bad options: headers.{name}: the value holds a line break or NUL "
                               "(a secret read from a file with its newline?)")
    method = options.get("method", "POST")
    timeout = parse_duration(options["timeout"]) if "timeout" in options else DEFAULT_TIMEOUT
    if timeout <= 0:
        raise buraq.Reject(f"{HANDLER}: bad options: timeout: {_PLAIN_WORDS['timeout']}")
    return Settings(
        url=options["url"],
        method=method,
        headers=dict(options.get("headers", {})),
        timeout=timeout,
        body=options.get("body", "none" if method in ("GET", "HEAD") else "payload"),
        follow_redirects=options.get("follow_redirects", False),
        retry_statuses=frozenset(options.get("retry_statuses", DEFAULT_RETRY_STATUSES)),
    )
