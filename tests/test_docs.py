"""Keep the documentation honest: what the code defines, the docs must describe.

Each test reads the real source of truth (the hookspecs module, the pipeline
schema, the metrics module, the argument parser, the test files) and checks the
docs against it, so adding a hook, a setting, a metric or a command without
documenting it fails the suite.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from buraq import hookspecs, metrics
from buraq.cli import _parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCHEMA = ROOT / "buraq" / "schema" / "pipeline.schema.json"


def _read(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _without_code(text: str) -> str:
    """Markdown with fenced code blocks and inline code removed (links in code are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


# Hooks -----------------------------------------------------------------------

def _hookspec_names() -> list[str]:
    return [name for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(value, "buraq_spec")]


def test_the_hookspecs_are_found() -> None:
    assert {"register_handlers", "register_codecs", "register_observers"} <= set(_hookspec_names())


@pytest.mark.parametrize("hook", _hookspec_names())
def test_every_hook_has_a_heading_in_the_plugin_guide(hook: str) -> None:
    headings = [line for line in _read("docs/plugins.md").splitlines() if line.startswith("#")]
    assert any(hook in heading for heading in headings), f"docs/plugins.md has no heading for hook {hook}"


# Pipeline settings -------------------------------------------------------------

def _schema_properties(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in schema.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        yield dotted, spec
        yield from _schema_properties(spec, f"{dotted}.")


SCHEMA_PROPERTIES = dict(_schema_properties(json.loads(SCHEMA.read_text(encoding="utf-8"))))


def test_the_schema_properties_are_found() -> None:
    assert {"name", "handler", "retry", "retry.attempts", "retry.backoff.jitter", "options"} <= set(SCHEMA_PROPERTIES)


@pytest.mark.parametrize("dotted", sorted(SCHEMA_PROPERTIES))
def test_every_pipeline_setting_has_a_row_with_its_default(dotted: str) -> None:
    rows = [line for line in _read("docs/pipelines.md").splitlines() if line.startswith(f"| `{dotted}` |")]
    assert rows, f"docs/pipelines.md has no table row starting with | `{dotted}` |"
    default = SCHEMA_PROPERTIES[dotted].get("default")
    if default is not None:
        assert str(default) in rows[0], f"the row for {dotted} does not give the default {default!r}"


# Metrics -----------------------------------------------------------------------

def _exposed_metric_names() -> list[str]:
    """Names as Prometheus sees them: counters gain ``_total``; histograms keep their name."""
    names = []
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            names.append(f"{family.name}_total" if family.type == "counter" else family.name)
    return sorted(names)


def test_the_metrics_are_found() -> None:
    assert "buraq_tasks_processed_total" in _exposed_metric_names()


@pytest.mark.parametrize("metric", _exposed_metric_names())
def test_every_metric_is_in_the_operations_guide(metric: str) -> None:
    assert f"`{metric}`" in _read("docs/operations.md"), f"docs/operations.md does not list {metric}"


# Command line ------------------------------------------------------------------

def _subparsers(parser: argparse.ArgumentParser, prefix: str = "buraq") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = f"{prefix} {name}"
                yield command, sub
                yield from _subparsers(sub, command)


COMMANDS = dict(_subparsers(_parser()))


def test_the_commands_are_found() -> None:
    assert {"buraq serve", "buraq validate", "buraq enqueue", "buraq plugins", "buraq dlq list"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented(command: str) -> None:
    assert command in _read("docs/operations.md") + _read("README.md"), f"{command!r} is not documented"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_option_is_in_the_operations_guide(command: str) -> None:
    text = _read("docs/operations.md")
    options = [flag for action in COMMANDS[command]._actions for flag in action.option_strings
               if flag.startswith("--") and flag != "--help"]
    missing = [flag for flag in options if f"`{flag}" not in text]
    assert not missing, f"docs/operations.md does not describe {command} {' '.join(missing)}"


def test_the_global_options_are_in_the_operations_guide() -> None:
    text = _read("docs/operations.md")
    for action in _parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in text, f"docs/operations.md does not describe {flag}"


# Links and test references -----------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def _relative_links() -> Iterator[tuple[Path, str]]:
    for path in _markdown_files():
        for target in _LINK.findall(_without_code(path.read_text(encoding="utf-8"))):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                yield path, target


def test_the_docs_exist_and_have_links() -> None:
    assert (DOCS / "architecture.md").exists()
    assert len(list(_relative_links())) > 10


@pytest.mark.parametrize(("source", "target"), [(p.relative_to(ROOT).as_posix(), t) for p, t in _relative_links()])
def test_every_relative_link_points_to_something_that_exists(source: str, target: str) -> None:
    origin = ROOT / source
    path_part, _, fragment = target.partition("#")
    resolved = (origin.parent / path_part).resolve() if path_part else origin
    assert resolved.exists(), f"{source}: link to {target} points to nothing"
    if fragment and resolved.suffix == ".md":
        assert fragment in _anchors(resolved), f"{source}: link to {target}: no heading with anchor #{fragment}"


def _test_references() -> Iterator[tuple[str, str, str]]:
    """Every ``tests/test_x.py::test_name`` (or ``plugins/P/tests/...``) named in the docs."""
    for path in _markdown_files():
        for file, name in re.findall(r"((?:plugins/[\w.-]+/)?tests/[\w/]+\.py)::(test_\w+)",
                                     path.read_text(encoding="utf-8")):
            yield path.relative_to(ROOT).as_posix(), file, name


def test_the_delivery_table_names_tests() -> None:
    assert any(source == "docs/delivery.md" for source, _, _ in _test_references())


@pytest.mark.parametrize(("source", "file", "name"), sorted(set(_test_references())))
def test_every_test_the_docs_cite_exists(source: str, file: str, name: str) -> None:
    tree = ast.parse(_read(file))
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert name in functions, f"{source} cites {file}::{name}, which does not exist"
