"""Errors buraq raises on purpose, each carrying enough context to act on.

Exit codes follow the CLI contract: a user error (bad config, bad plugin, bad
input) exits 1, a bug exits 3, an interrupt exits 130.
"""

from __future__ import annotations

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130


class BuraqError(Exception):
    """Base class: anything buraq reports to a user rather than crashing on."""


class ConfigProblem(BuraqError):
    """One problem in one pipeline file, located by file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class ConfigError(BuraqError):
    """A set of pipeline files that cannot run; holds every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))


class PluginError(BuraqError):
    """A plugin that failed to load or registered something it may not."""


class TaskRejected(BuraqError):
    """A producer refused a task before it reached Redis (e.g. too large)."""


class UnknownPipeline(BuraqError):
    """A command named a pipeline that no loaded pipeline file defines."""
