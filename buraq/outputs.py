"""Where a pipeline's results go (`output:`): which targets are pipelines, which raw streams, and cycles.

A target containing ``:`` is a raw stream key; anything else names a pipeline.
Pipeline names cannot contain ``:`` (the schema forbids it) and every default
key does (``buraq:{NAME}:tasks``), so the two never collide. Nothing here
talks to Redis; `buraq validate` and `buraq serve` both run these checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from buraq import keys


class _Chained(Protocol):
    name: str
    stream: str
    output: tuple[str, ...]

    def location(self, key: str) -> str: ...


def is_raw_stream(target: str) -> bool:
    """True for a raw stream key such as ``audit:{audit}:in``; False for a pipeline name."""
    return ":" in target


def problems(pipelines: Sequence[_Chained]) -> list[tuple[str, str]]:
    """(FILE:LINE of the `output:` key, message) for each unknown target and each cycle among pipelines."""
    by_name: dict[str, _Chained] = {}
    for pipeline in pipelines:
        by_name.setdefault(pipeline.name, pipeline)
    streams = {pipeline.stream: pipeline.name for pipeline in pipelines}
    found = []
    for pipeline in pipelines:
        where = pipeline.location("output")
        for target in pipeline.output:
            message = _target_problem(target, by_name, streams)
            if message:
                found.append((where, f"pipeline {pipeline.name!r}: output {target!r}: {message}"))
    for cycle in cycles(by_name.values()):
        first = by_name[cycle[0]]
        found.append((first.location("output"), f"pipeline {first.name!r}: output forms a cycle "
                                                f"{' -> '.join(cycle)} (each task would feed the next one forever)"))
    return found


def _target_problem(target: str, by_name: dict[str, _Chained], streams: dict[str, str]) -> str | None:
    if not is_raw_stream(target):
        if target in by_name:
            return None
        known = ", ".join(sorted(by_name)) or "none"
        return (f"no pipeline of that name (known: {known}); a raw stream key must contain ':', "
                "e.g. 'results:{results}:in'")
    if target in streams:
        return f"is the stream of pipeline {streams[target]!r}: name the pipeline instead"
    try:
        keys.sibling(target, "dedup:x")
    except ValueError as exc:
        return str(exc)
    return None


def cycles(pipelines: Iterable[_Chained]) -> list[list[str]]:
    """Each cycle of pipeline-to-pipeline outputs once, as names from its first-defined member back to it."""
    graph = {p.name: [t for t in p.output if not is_raw_stream(t)] for p in pipelines}
    order = list(graph)
    seen: set[frozenset[str]] = set()
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for target in graph.get(name, []):
            if state.get(target) == 1:
                loop = path[path.index(target):]
                if frozenset(loop) not in seen:
                    seen.add(frozenset(loop))
                    start = min(range(len(loop)), key=lambda i: order.index(loop[i]))
                    rotated = loop[start:] + loop[:start]
                    found.append(rotated + [rotated[0]])
            elif target in graph and state.get(target) is None:
                visit(target, path)
        path.pop()
        state[name] = 2

    for name in order:
        if state.get(name) is None:
            visit(name, [])
    return found
