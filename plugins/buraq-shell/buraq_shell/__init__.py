"""Run a command for each task: the ``shell.run`` handler.

Pipeline options (OPTIONS_SCHEMA has them all): ``command`` (required, a list: the program
and its fixed arguments), ``args`` (templates filled from payload fields), ``stdin``
(json | none), ``output`` (text | json | none), ``timeout`` (60s), ``env``, ``cwd``,
``retry_exit_codes``, ``reject_exit_codes``, ``max_output`` (1 MiB).

Never a shell: the command is executed directly (no ``shell=True``), so a payload can never
become shell syntax. Exit 0 is success and returns stdout. A code in ``reject_exit_codes``
raises ``buraq.Reject`` (dead-lettered at once); a code in ``retry_exit_codes`` (or, when that
option is absent, any other non-zero code) and a death by signal raise CommandFailed, which
buraq retries; with ``retry_exit_codes`` given, any other code rejects. A timeout kills the
command's whole process group and raises CommandTimeout (retried). Errors end with the tail
of stderr; they name the program but never its arguments, the payload or ``env`` values.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
from collections.abc import Callable
from typing import Any

import buraq
from buraq_shell import process
from buraq_shell.options import HANDLER, OPTIONS_SCHEMA, Settings, read_options
from buraq_shell.template import TemplateError, render_args

__all__ = ["CommandFailed", "CommandTimeout", "OPTIONS_SCHEMA", "run"]

ERROR_STDERR_CHARS = 500


class CommandFailed(Exception):
    """The command exited with a retryable code, died by a signal, or wrote too much or unusable output."""


class CommandTimeout(Exception):
    """The command ran past the ``timeout`` option; its process group was killed."""


async def run(task: buraq.Task) -> Any:
    """Run the configured command for ``task``; return its stdout (as the ``output`` option says)."""
    settings = read_options(task.options)
    try:
        argv = settings.command + render_args(settings.args, task.payload, options_end="--" in settings.command)
    except TemplateError as exc:
        raise buraq.Reject(f"{HANDLER}: {exc}") from None
    name = _display(settings)
    capture = process.Capture()
    try:
        finished = await process.run(argv, _stdin(task, settings), _environment(task, settings), settings.cwd,
                                     settings.timeout, settings.max_output, capture)
    except TimeoutError:
        raise CommandTimeout(f"{name} timed out after {settings.timeout:g}s; its process group was killed"
                             + _tail(capture.stderr_tail)) from None
    except process.OutputTooLarge as exc:
        raise CommandFailed(f"{name}: {exc}; its process group was killed" + _tail(capture.stderr_tail)) from None
    except OSError as exc:  # could not start: not found, not executable, no such cwd
        raise buraq.Reject(f"{name} could not start: {type(exc).__name__}: {_os_error(exc)}") from None
    _check_exit(name, finished, settings)
    return _output(name, finished, settings)


def _stdin(task: buraq.Task, settings: Settings) -> bytes | None:
    if settings.stdin == "none":
        return None
    try:
        return json.dumps(task.payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise buraq.Reject(f"{HANDLER}: the payload cannot be sent as JSON: {exc}") from None


# The worker's own settings and credentials (the Redis URL with its password, the dashboard token,
# the metrics folder) are not the command's business: a command gets them only through ``env``.
_WORKER_ONLY = ("BURAQ_", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")


def _environment(task: buraq.Task, settings: Settings) -> dict[str, str]:
    """The worker's environment less its own secrets, the task's identity (for idempotency), then ``env``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(_WORKER_ONLY)}
    return {**inherited, "BURAQ_TASK_ID": task.id, "BURAQ_ATTEMPT": str(task.attempt),
            "BURAQ_PIPELINE": task.pipeline, **settings.env}


def _check_exit(name: str, finished: process.Finished, settings: Settings) -> None:
    code = finished.returncode
    if code == 0:
        return
    tail = _tail(finished.stderr_tail)
    if code < 0:  # killed by a signal: the OOM killer, an operator; worth another try
        raise CommandFailed(f"{name} was killed by {_signal_name(-code)}{tail}")
    if code in settings.reject_exit_codes:
        raise buraq.Reject(f"{name} exited with {code} (in reject_exit_codes){tail}")
    if settings.retry_exit_codes is not None and code not in settings.retry_exit_codes:
        raise buraq.Reject(f"{name} exited with {code} (not in retry_exit_codes){tail}")
    raise CommandFailed(f"{name} exited with {code}{tail}")


def _output(name: str, finished: process.Finished, settings: Settings) -> Any:
    if settings.output == "none":
        return None
    text = finished.stdout.decode("utf-8", errors="replace")
    if settings.output == "text":
        return text
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandFailed(f"{name}: stdout is not JSON ({exc}), and output: json was asked for") from None


def _display(settings: Settings) -> str:
    """The program only: its arguments may hold a secret (from ${VAR}) or payload data."""
    return f"command {shlex.quote(settings.command[0])}"


def _tail(stderr: bytes) -> str:
    text = stderr.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    return "; stderr: " + (text if len(text) <= ERROR_STDERR_CHARS else "…" + text[-ERROR_STDERR_CHARS:])


def _os_error(exc: OSError) -> str:
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return exc.strerror or str(exc)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@buraq.hookimpl
def register_handlers(register: Callable[..., None]) -> None:
    register(HANDLER, run, options_schema=OPTIONS_SCHEMA)  # `buraq validate` checks options too
