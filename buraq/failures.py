"""Ways a task attempt fails other than its handler raising: recorded in the DLQ by type name."""

from __future__ import annotations


class TaskTimeout(Exception):
    """A handler ran past its pipeline's ``timeout``."""


class HandlerProcessDied(Exception):
    """The child process running the handler (``executor: process``) exited before it answered."""


class HandlerError(Exception):
    """The handler raised in its child process; carries the original type name and traceback."""

    def __init__(self, type_name: str, message: str, trace: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.trace = trace
