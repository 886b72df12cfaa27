"""Read a YAML file the safe way, remembering the line of every value.

Only ``yaml.SafeLoader`` constructs values, so a ``!!python/...`` tag is an
error and never runs. ``${VAR}`` and ``${VAR:default}`` are filled in per
scalar (never in comments, and never able to change the file's structure);
``$${`` writes a literal ``${``. A plain scalar is re-typed after interpolation,
so ``pool: ${POOL:4}`` gives the integer 4.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from buraq.errors import ConfigProblem

Path_ = tuple[Any, ...]
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


@dataclass
class YamlDocument:
    """The decoded value of one document, and the line of each node by its path."""

    path: str
    value: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, node_path: Path_) -> int | None:
        """The line of ``node_path``, or of its nearest ancestor that has one."""
        node_path = tuple(node_path)
        while node_path:
            if node_path in self.lines:
                return self.lines[node_path]
            node_path = node_path[:-1]
        return self.lines.get(())


def interpolate(text: str, environ: Mapping[str, str], path: str, line: int) -> str:
    """Fill ``${VAR}`` / ``${VAR:default}`` from ``environ``; an unset variable without default is an error."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigProblem(path, line, f"environment variable {name} is not set and has no default (write ${{{name}:default}})")

    return _VARIABLE.sub(substitute, text)


def load_documents(path: str, environ: Mapping[str, str] | None = None) -> list[YamlDocument]:
    """Parse every document in ``path``; raise ConfigProblem with the line of the first problem."""
    environ = os.environ if environ is None else environ
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigProblem(path, None, f"not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ConfigProblem(path, None, f"cannot read: {exc.strerror}") from None
    loader = _Loader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Path_, int] = {}
            _prepare(node, (), lines, loader, environ, path)
            documents.append(YamlDocument(path, loader.construct_document(node), lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigProblem(path, line, f"YAML: {message}") from None
    except yaml.YAMLError as exc:
        raise ConfigProblem(path, None, f"YAML: {exc}") from None
    finally:
        loader.dispose()
    return documents


class _Loader(yaml.SafeLoader):
    """SafeLoader that remembers which scalars carried an explicit tag, so interpolation keeps it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.explicitly_tagged: set[int] = set()

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:
        explicit = self.peek_event().tag not in (None, "!")
        node = super().compose_scalar_node(anchor)
        if explicit:
            self.explicitly_tagged.add(id(node))
        return node


def _prepare(node: yaml.Node, node_path: Path_, lines: dict[Path_, int], loader: _Loader,
             environ: Mapping[str, str], path: str, visited: set[int] | None = None) -> None:
    """Record lines, reject duplicate keys and interpolate scalars, before anything is constructed.

    A node reached again through an alias is not walked twice: that would interpolate it
    twice and let nested aliases blow up exponentially.
    """
    visited = set() if visited is None else visited
    line = node.start_mark.line + 1
    lines.setdefault(node_path, line)
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if "${" in node.value:
            node.value = interpolate(node.value, environ, path, line)
            if node.style is None and id(node) not in loader.explicitly_tagged:
                node.tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _prepare(item, node_path + (index,), lines, loader, environ, path, visited)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key in seen:
                raise ConfigProblem(path, key_line, f"duplicate key {key!r} (first on line {seen[key]})")
            seen[key] = key_line
            lines[node_path + (key,)] = key_line
            _prepare(value_node, node_path + (key,), lines, loader, environ, path, visited)
