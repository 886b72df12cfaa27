"""The ``options:`` of a ``shell.run`` pipeline: their JSON Schema, and reading them into settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

import buraq
from buraq.durations import DURATION_REGEX, parse_duration

HANDLER = "shell.run"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_OUTPUT = 1 << 20
_EXIT_CODES = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 255}, "uniqueItems": True}

OPTIONS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "shell.run options",
    "type": "object",
    "required": ["command"],
    "additionalProperties": False,
    "properties": {
        "command": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                    "description": "The program and its fixed arguments; run directly, never through a shell."},
        "args": {"type": "array", "items": {"type": "string"},
                 "description": "More arguments, each a template: {field} or {a.b} is replaced by that payload "
                                "field (a string, number or boolean); {{ and }} are literal braces."},
        "stdin": {"enum": ["json", "none"], "description": "json: the payload as JSON on stdin (default)."},
        "output": {"enum": ["text", "json", "none"],
                   "description": "What the handler returns: stdout as text (default), parsed as JSON, or None."},
        "timeout": {"oneOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": DURATION_REGEX}],
                    "description": "Kill the command's process group after this long (default 60s)."},
        "env": {"type": "object", "additionalProperties": {"type": "string"},
                "description": "Variables added to the worker's environment for the command."},
        "cwd": {"type": "string", "minLength": 1, "description": "The working directory (default: the worker's)."},
        "retry_exit_codes": {**_EXIT_CODES, "description": "Exit codes to retry. When given, every other "
                                                           "non-zero code rejects; when not, every one retries."},
        "reject_exit_codes": {**_EXIT_CODES, "description": "Exit codes that dead-letter the task at once."},
        "max_output": {"type": "integer", "minimum": 1, "description": "Most stdout bytes kept (default 1 MiB); "
                                                                       "more fails the attempt."},
    },
}

# Plain words instead of the raw message, which would echo an env value (maybe a secret) or a regex.
_PLAIN_WORDS = {"env": "environment values must be strings (quote numbers in YAML)",
                "timeout": "must be a duration above 0, such as 30s, 500ms or 2.5 (seconds)"}
_VALIDATOR = jsonschema.Draft202012Validator(OPTIONS_SCHEMA)


@dataclass(frozen=True)
class Settings:
    command: list[str]
    args: list[str]
    stdin: str
    output: str
    timeout: float
    env: dict[str, str]
    cwd: str | None
    retry_exit_codes: frozenset[int] | None  # None: every non-zero code not rejected retries
    reject_exit_codes: frozenset[int]
    max_output: int


def read_options(options: dict[str, Any]) -> Settings:
    """Validate ``options`` against OPTIONS_SCHEMA; bad options can never succeed, so they reject the task."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(options))
    if error is not None:
        path = [str(part) for part in error.absolute_path]
        _bad(".".join(path) or "options", (_PLAIN_WORDS.get(path[0]) if path else None) or error.message)
    timeout = parse_duration(options["timeout"]) if "timeout" in options else DEFAULT_TIMEOUT
    if timeout <= 0:
        _bad("timeout", _PLAIN_WORDS["timeout"])
    retry = options.get("retry_exit_codes")
    reject = frozenset(options.get("reject_exit_codes", ()))
    if retry is not None and reject & set(retry):
        _bad("reject_exit_codes", f"{sorted(reject & set(retry))} also in retry_exit_codes")
    return Settings(
        command=list(options["command"]), args=list(options.get("args", [])),
        stdin=options.get("stdin", "json"), output=options.get("output", "text"), timeout=timeout,
        env=dict(options.get("env", {})), cwd=options.get("cwd"),
        retry_exit_codes=None if retry is None else frozenset(retry), reject_exit_codes=reject,
        max_output=options.get("max_output", DEFAULT_MAX_OUTPUT),
    )


def _bad(where: str, message: str) -> None:
    raise buraq.Reject(f"{HANDLER}: bad options: {where}: {message}")
