"""Judge each case against what happened, and print it the way pytest does: a line per case, then a summary."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import Any, TextIO

from buraq.authoring.cases import Case
from buraq.authoring.runner import Result


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1 equals 1.0, but true is not 1 (as Python's == would have it)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def as_json(value: Any) -> Any:
    """A handler's return value as JSON would carry it (tuples become lists); TypeError if it cannot be."""
    return json.loads(json.dumps(value, allow_nan=False))


def mismatches(case: Case, result: Result) -> list[str]:
    """Why ``result`` breaks ``case``'s expectations: one entry per broken expectation (empty: it passed)."""
    expect = case.expect
    if result.state not in ("done", "dead"):
        why = result.error or "it did not end before --timeout (still queued, running or waiting to retry)"
        return [f"outcome: expected {expect['outcome']}, got {result.state}: {why}"]
    problems = []
    if result.state != expect["outcome"]:
        got = result.state if result.state == "done" else (
            f"dead ({result.reason}, {result.error_type}: {result.error})")
        problems.append(f"outcome: expected {expect['outcome']}, got {got}")
    for key in ("reason", "error_type", "attempts"):
        if key in expect and getattr(result, key) != expect[key]:
            problems.append(f"{key}: expected {expect[key]!r}, got {getattr(result, key)!r}")
    if "output" in expect and result.state == "done":
        problems.extend(_output_problems(expect["output"], result.output))
    return problems


def _output_problems(expected: Any, output: Any) -> list[str]:
    try:
        got = as_json(output)
    except (TypeError, ValueError) as exc:
        return [f"output: the handler returned {output!r}, which is not JSON ({exc})"]
    if json_equal(expected, got):
        return []
    diff = difflib.unified_diff(_lines(expected), _lines(got), "expected", "got", lineterm="")
    return ["output differs:", *("  " + line for line in diff)]


def _lines(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def report(cases: Sequence[Case], results: Sequence[Sequence[Result]], seconds: float, out: TextIO) -> int:
    """Print one line per case (PASS/FAIL, with why), then a summary; return how many failed."""
    failed = 0
    for case, case_results in zip(cases, results):
        problems = []
        for index, result in enumerate(case_results):
            found = mismatches(case, result)
            if found and len(case_results) > 1:
                found = [f"input {index}: {json.dumps(case.inputs[index], ensure_ascii=False)[:80]}",
                         *("  " + line for line in found)]
            problems.extend(found)
        failed += bool(problems)
        print(f"{case.where}: {case.pipeline}: {case.name} {'FAIL' if problems else 'PASS'}", file=out)
        for line in problems:
            print(f"    {line}", file=out)
    passed = len(cases) - failed
    parts = ([f"{failed} failed"] if failed else []) + [f"{passed} passed"]
    print(f"== {', '.join(parts)} in {seconds:.2f}s ==", file=out)
    return failed
