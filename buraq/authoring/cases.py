"""Test case files for `buraq test`: find them, check them (FILE:LINE), and turn them into Case values.

Cases live next to the pipelines they test, in ``PIPELINES/tests/*.yaml``, a folder
pipeline loading skips. Each document names one pipeline and lists its cases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from buraq.config import TESTS_FOLDER, schema_problems
from buraq.errors import ConfigError, ConfigProblem
from buraq.yamlfile import YamlDocument, load_documents

_DEAD_ONLY = ("reason", "error_type")


@dataclass(frozen=True)
class Case:
    """One case: payloads to enqueue and what must become of each."""

    pipeline: str
    name: str
    inputs: tuple[Any, ...]
    where: str  # FILE:LINE of the case, for the report
    options: Mapping[str, Any] = field(default_factory=dict)
    # Only the expectations the file states: output, outcome, reason, error_type, attempts.
    expect: Mapping[str, Any] = field(default_factory=dict)


@cache
def tests_schema() -> dict[str, Any]:
    return json.loads(resources.files("buraq").joinpath("schema/tests.schema.json").read_text("utf-8"))


def find_test_files(path: str | Path) -> tuple[Path, list[Path]]:
    """The pipelines folder and the test files for ``path``: a pipelines folder, or one test file in it."""
    path = Path(path)
    if path.is_file():
        if path.parent.name != TESTS_FOLDER:
            raise ConfigError([ConfigProblem(str(path), None, f"a test file lives in a {TESTS_FOLDER}/ folder "
                                                              "next to the pipelines it tests")])
        return path.parent.parent, [path]
    if not path.is_dir():
        raise ConfigError([ConfigProblem(str(path), None, "no such file or directory")])
    folder = path / TESTS_FOLDER
    files = sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
    return path, files


def load_cases(files: Iterable[Path], pipelines: Iterable[str]) -> list[Case]:
    """Every case in ``files``; raise ConfigError listing every problem, each with its line."""
    known = set(pipelines)
    problems: list[ConfigProblem] = []
    cases: list[Case] = []
    for file in files:
        try:
            documents = load_documents(str(file))
        except ConfigProblem as problem:
            problems.append(problem)
            continue
        for document in documents:
            if document.value is not None:
                cases.extend(_cases_in(document, known, problems))
    if problems:
        raise ConfigError(problems)
    return cases


def _cases_in(document: YamlDocument, known: set[str], problems: list[ConfigProblem]) -> list[Case]:
    raw = document.value
    found = schema_problems(document, (), raw, tests_schema())
    if found:
        problems.extend(found)
        return []

    def problem(message: str, *where: Any) -> None:
        problems.append(ConfigProblem(document.path, document.line_of(where), message))

    if raw["pipeline"] not in known:
        problem(f"no pipeline named {raw['pipeline']!r} (known: {', '.join(sorted(known)) or 'none'})", "pipeline")
        return []
    cases, seen = [], set()
    for index, entry in enumerate(raw["cases"]):
        if entry["name"] in seen:
            problem(f"cases[{index}]: another case in this file is named {entry['name']!r}", "cases", index, "name")
        seen.add(entry["name"])
        if ("input" in entry) == ("inputs" in entry):
            problem(f"cases[{index}]: give exactly one of input or inputs", "cases", index)
        outcome = entry.get("outcome", "done")
        for key in _DEAD_ONLY:
            if key in entry and outcome != "dead":
                problem(f"cases[{index}].{key} needs outcome: dead", "cases", index, key)
        if "output" in entry and outcome != "done":
            problem(f"cases[{index}].output needs outcome: done (a dead-lettered task has no output)",
                    "cases", index, "output")
        expect = {key: entry[key] for key in ("output", "reason", "error_type", "attempts") if key in entry}
        expect["outcome"] = outcome
        inputs = tuple(entry["inputs"]) if "inputs" in entry else (entry.get("input"),)
        line = document.line_of(("cases", index))
        cases.append(Case(raw["pipeline"], entry["name"], inputs, f"{document.path}:{line}",
                          entry.get("options", {}), expect))
    return cases
