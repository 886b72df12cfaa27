"""Ways a task attempt fails other than its handler raising: recorded in the DLQ by type name."""

from __future__ import annotations


class TaskTimeout(Exception):
    """A handler ran past its pipeline's ``timeout``."""


class HandlerProcessDied(Exception):
    """The child process running the handler (``executor: process``) exited before it answered."""


class Reject(Exception):
    """Raised by a handler for a task that can never succeed: dead-letter it now (reason ``rejected``), no retry.

    Public as ``buraq.Reject``. Retrying a 4xx reply or a malformed order only wastes attempts and delays
    the operator's look at it; any other exception is retried as the pipeline's ``retry`` says.
    """


class HandlerError(Exception):
    """The handler raised in its child process; carries the original type name and traceback."""

    def __init__(self, type_name: str, message: str, trace: str, rejected: bool = False) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.trace = trace
        self.rejected = rejected


def is_rejection(error: BaseException) -> bool:
    """True for ``Reject`` (or a subclass), raised here or in a handler's child process."""
    return isinstance(error, Reject) or getattr(error, "rejected", False) is True
