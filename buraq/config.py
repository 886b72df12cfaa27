"""Pipeline files: find them, check them, and turn them into Pipeline values.

Every problem is reported as ``FILE:LINE: message`` and all of them are
collected before giving up, so one ``buraq validate`` run shows everything.
Nothing here talks to Redis.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
from croniter import croniter

from buraq import keys, outputs
from buraq.durations import parse_duration
from buraq.schedules import Schedule, default_name, never_fires
from buraq.errors import ConfigError, ConfigProblem, UnknownPipeline
from buraq.yamlfile import YamlDocument, load_documents

DEFAULT_MAX_PAYLOAD = 1024 * 1024
DEFAULT_LEASE = 15.0
DEFAULT_DEDUP_WINDOW = 24 * 3600.0
# A lease shorter than this would have workers heartbeat more often than is sane.
MIN_LEASE = 0.5
# Folders of this name, below a pipelines folder, hold `buraq test` cases rather than pipelines.
TESTS_FOLDER = "tests"


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    multiplier: float = 2.0
    max: float = 300.0
    jitter: float = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True)
class Pipeline:
    """One pipeline as the engine runs it, defaults filled in."""

    name: str
    handler: str
    stream: str
    dlq: str
    pool: int = 10
    codec: str = "json"
    timeout: float | None = None
    lease: float = DEFAULT_LEASE
    executor: str = "thread"
    max_payload: int = DEFAULT_MAX_PAYLOAD
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    options: Mapping[str, Any] = field(default_factory=dict)
    payload_schema: Mapping[str, Any] | None = None
    schedule: tuple[Schedule, ...] = ()
    output: tuple[str, ...] = ()
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    rate_limit: tuple[int, float] | None = None  # (tasks, per seconds)
    concurrency: int | None = None
    description: str = ""
    source: str = ""
    # FILE:LINE of the keys later checks may complain about (name, handler, stream, ...).
    locations: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def location(self, key: str) -> str:
        return self.locations.get(key, self.source)

    @property
    def delayed(self) -> str:
        """Sorted set of tasks waiting for a retry, in the stream's hash slot."""
        return keys.delayed_key(self.stream)

    @property
    def consumers(self) -> str:
        """Hash of consumer name -> "<lease expiry ms>:<lease ms>" (Redis time): who is alive, at what rate."""
        return keys.sibling(self.stream, "consumers")

    @property
    def schedules(self) -> str:
        """Hash of schedule name -> last tick handled (ms), the claim every scheduler checks; NAME:fired -> last fired."""
        return keys.sibling(self.stream, "schedules")

    def overlap_marker(self, schedule: str) -> str:
        """Set while a tick's task of an `overlap: skip` schedule has not ended."""
        return keys.sibling(self.stream, f"running:{schedule}")

    def dedup_key(self, key: str) -> str:
        """Remembers which task an enqueue key produced, for ``dedup.window``."""
        return keys.sibling(self.stream, f"dedup:{key}")

    def forward_key(self, parent: str) -> str:
        """Remembers the task a parent (``SOURCE/TASK_ID``) forwarded here, so a redelivery adds none."""
        return keys.sibling(self.stream, f"forwarded:{parent}")

    @property
    def rate_key(self) -> str:
        """The rate limiter's state: the theoretical arrival time (ms) of the next start."""
        return keys.sibling(self.stream, "rate")

    @property
    def permits(self) -> str:
        """Sorted set of concurrency permits held, scored by their expiry (ms, Redis time)."""
        return keys.sibling(self.stream, "permits")

    @property
    def group(self) -> str:
        return keys.GROUP


@cache
def pipeline_schema() -> dict[str, Any]:
    """The JSON Schema every pipeline is checked against (shipped in the package)."""
    text = resources.files("buraq").joinpath("schema/pipeline.schema.json").read_text("utf-8")
    return json.loads(text)


def find_pipeline_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` file named or found below the given paths.

    Hidden files and folders are skipped, and so are ``tests`` folders: they hold the
    test cases ``buraq test`` runs, not pipelines.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                relative = candidate.relative_to(path).parts
                if candidate.suffix in (".yaml", ".yml") and candidate.is_file() and not any(
                    part.startswith(".") for part in relative
                ) and TESTS_FOLDER not in relative[:-1]:
                    found.append(candidate)
        elif path.exists():
            found.append(path)
        else:
            raise ConfigError([ConfigProblem(str(path), None, "no such file or directory")])
    return found


def load_pipelines(
    paths: Iterable[str | os.PathLike[str]],
    handlers: Container[str] | None = None,
    environ: Mapping[str, str] | None = None,
    codecs: Container[str] | None = None,
    options_schemas: Mapping[str, Any] | None = None,
) -> list[Pipeline]:
    """Load and check every pipeline under ``paths``; raise ConfigError listing all problems.

    ``handlers`` and ``codecs``, when given, are the registered names to check against;
    ``options_schemas`` maps handler names to the JSON Schema their ``options:`` must match.
    """
    problems: list[ConfigProblem] = []
    pipelines: list[Pipeline] = []
    files = find_pipeline_files(paths)
    for file in files:
        try:
            documents = load_documents(str(file), environ)
        except ConfigProblem as problem:
            problems.append(problem)
            continue
        for document in documents:
            pipelines.extend(_pipelines_in(document, problems, options_schemas))
    problems.extend(_cross_checks(pipelines, handlers, codecs))
    if problems:
        raise ConfigError(problems)
    return pipelines


def payload_checker(pipeline: Pipeline) -> Callable[[Any], None] | None:
    """A function raising ValueError when a payload breaks the pipeline's ``payload_schema`` (None without one)."""
    if pipeline.payload_schema is None:
        return None
    validator = jsonschema.Draft202012Validator(pipeline.payload_schema)

    def check(payload: Any) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path)
            raise ValueError(f"payload does not match payload_schema{f' at {where}' if where else ''}: {error.message}")

    return check


def find_pipeline(pipelines: Iterable[Pipeline], name: str) -> Pipeline:
    for pipeline in pipelines:
        if pipeline.name == name:
            return pipeline
    known = ", ".join(sorted(p.name for p in pipelines)) or "none"
    raise UnknownPipeline(f"no pipeline named {name!r} (known: {known})")


def _pipelines_in(document: YamlDocument, problems: list[ConfigProblem],
                  options_schemas: Mapping[str, Any] | None = None) -> list[Pipeline]:
    value = document.value
    if value is None:
        return []
    if isinstance(value, dict):
        entries = [((), value)]
    elif isinstance(value, list):
        entries = [((index,), item) for index, item in enumerate(value)]
    else:
        problems.append(ConfigProblem(document.path, document.line_of(()),
                                      "a pipeline file holds a mapping (one pipeline) or a list of mappings"))
        return []
    pipelines = []
    for prefix, raw in entries:
        found = schema_problems(document, prefix, raw)
        if not found:
            pipeline = _build(document, prefix, raw, found)
            schema = (options_schemas or {}).get(raw["handler"])
            if schema is not None:
                found.extend(schema_problems(document, prefix + ("options",), raw.get("options", {}), schema, "options"))
            if pipeline is not None and not found:
                pipelines.append(pipeline)
        problems.extend(found)
    return pipelines


def schema_problems(document: YamlDocument, prefix: tuple[Any, ...], instance: Any,
                    schema: Mapping[str, Any] | bool | None = None, label: str = "") -> list[ConfigProblem]:
    """``instance`` (found at ``prefix`` in ``document``) checked against ``schema`` (default: the pipeline's).

    ``label`` names where the instance sits (``options``), so messages read ``options.size: ...``.
    """
    schema = pipeline_schema() if schema is None else schema
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        path = prefix + tuple(error.absolute_path)
        dotted = ".".join(([label] if label else []) + [str(part) for part in error.absolute_path])
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = error.schema.get("properties", {})
            for key in error.instance:
                if key not in allowed:
                    where = f"{dotted}." if dotted else ""
                    hint = ", ".join(sorted(allowed)) or "none"
                    problems.append(ConfigProblem(document.path, document.line_of(path + (key,)),
                                                  f"unknown key {where}{key} (allowed: {hint})"))
            continue
        if error.validator == "oneOf" and error.schema is pipeline_schema()["$defs"]["duration"]:
            message = f"{error.instance!r} is not a duration (use e.g. 30s, 5m, 1h, 250ms or seconds)"
        elif error.validator == "oneOf" and list(error.absolute_path)[:1] == ["schedule"] and not label:
            message = "give exactly one of cron or every"
        else:
            message = error.message
        problems.append(ConfigProblem(document.path, document.line_of(path), f"{dotted}: {message}" if dotted else message))
    return problems


def _build(document: YamlDocument, prefix: tuple[Any, ...], raw: dict[str, Any],
           problems: list[ConfigProblem]) -> Pipeline | None:
    """The Pipeline for a schema-valid mapping; problems the schema cannot see go to ``problems``."""

    def problem(message: str, *where: Any) -> None:
        problems.append(ConfigProblem(document.path, document.line_of(prefix + where), message))

    def at(*where: Any) -> str:
        line = document.line_of(prefix + where)
        return f"{document.path}:{line}" if line else document.path

    name = raw["name"]
    stream = raw.get("stream") or keys.default_stream(name)
    try:
        dlq = raw.get("dlq") or keys.default_dlq(stream)
        keys.delayed_key(stream)
    except ValueError as exc:
        problem(str(exc), "stream")
        return None
    retry = raw.get("retry", {})
    backoff = retry.get("backoff", {})
    for key in ("multiplier", "jitter"):
        if key in backoff and not math.isfinite(backoff[key]):
            problem(f"retry.backoff.{key}: {backoff[key]!r} is not a finite number", "retry", "backoff", key)

    def duration(value: Any, where: tuple[Any, ...]) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            problem(str(exc), *where)
            return 0.0

    timeout = duration(raw["timeout"], ("timeout",)) if "timeout" in raw else None
    lease = duration(raw.get("lease", DEFAULT_LEASE), ("lease",))
    if lease < MIN_LEASE:
        problem(f"lease: {raw.get('lease')!r} is shorter than the minimum of {MIN_LEASE}s", "lease")
    defaults = Backoff()
    policy = RetryPolicy(
        attempts=int(retry.get("attempts", RetryPolicy.attempts)),
        backoff=Backoff(
            initial=duration(backoff.get("initial", defaults.initial), ("retry", "backoff", "initial")),
            multiplier=float(backoff.get("multiplier", defaults.multiplier)),
            max=duration(backoff.get("max", defaults.max), ("retry", "backoff", "max")),
            jitter=float(backoff.get("jitter", defaults.jitter)),
        ),
    )
    if dlq == stream:
        problem("dlq must differ from stream", "dlq")
    elif not keys.same_slot(stream, dlq):
        problem(f"dlq {dlq!r} must share the stream's hash tag {{{keys.hash_tag(stream)}}} "
                "so one atomic step can write it and acknowledge the task", "dlq")
    payload_schema = raw.get("payload_schema")
    if payload_schema is not None:
        try:
            jsonschema.Draft202012Validator.check_schema(payload_schema)
        except jsonschema.SchemaError as exc:
            problem(f"payload_schema is not a valid JSON Schema: {exc.message}", "payload_schema",
                    *exc.absolute_path)
    schedules = tuple(_schedules(raw.get("schedule", []), problem, duration))
    line = document.line_of(prefix)
    locations = {key: at(key) for key in ("name", "handler", "stream", "dlq", "codec", "output") if key in raw}
    output = raw.get("output", ())
    output = (output,) if isinstance(output, str) else tuple(output)
    limit = raw.get("rate_limit")
    rate = (int(limit["tasks"]), duration(limit["per"], ("rate_limit", "per"))) if limit else None
    if rate is not None and rate[1] <= 0:
        problem("rate_limit.per must be longer than 0", "rate_limit", "per")
    window = duration(raw.get("dedup", {}).get("window", DEFAULT_DEDUP_WINDOW), ("dedup", "window"))
    if window < 0.001:
        problem("dedup.window must be at least 1ms", "dedup", "window")
    built = Pipeline(
        name=name, handler=raw["handler"], stream=stream, dlq=dlq, pool=int(raw.get("pool", 10)),
        codec=raw.get("codec", "json"),
        timeout=timeout or None, lease=lease, executor=raw.get("executor", "thread"), max_payload=int(raw.get("max_payload", DEFAULT_MAX_PAYLOAD)), retry=policy,
        options=raw.get("options", {}), payload_schema=payload_schema, schedule=schedules,
        output=output, dedup_window=window, rate_limit=rate, concurrency=raw.get("concurrency"),
        description=raw.get("description", ""),
        source=f"{document.path}:{line}" if line else document.path, locations=locations,
    )
    _check_schedule_payloads(built, problem)
    return built


def _schedules(raw: list[dict[str, Any]], problem: Callable[..., None],
               duration: Callable[[Any, tuple[Any, ...]], float]) -> list[Schedule]:
    """Check each `schedule:` entry's cron expression and time zone; problems name its line."""
    schedules, names = [], set()
    for index, entry in enumerate(raw):
        where = ("schedule", index)
        zone = entry.get("timezone", "UTC")
        if not zone_ok(zone):
            problem(f"schedule[{index}].timezone: unknown time zone {zone!r} (use an IANA name like Europe/Berlin)",
                    *where, "timezone")
        if "cron" in entry and not croniter.is_valid(entry["cron"]):
            problem(f"schedule[{index}].cron: {entry['cron']!r} is not a valid cron expression", *where, "cron")
        elif "cron" in entry and zone_ok(zone) and never_fires(Schedule(name="check", cron=entry["cron"], timezone=zone),
                                                               int(time.time() * 1000)):
            problem(f"schedule[{index}].cron: {entry['cron']!r} never fires (no such date within five years)",
                    *where, "cron")
        every = duration(entry["every"], (*where, "every")) if "every" in entry else None
        if every is not None and every < 0.1:
            problem(f"schedule[{index}].every: {entry['every']!r} is shorter than 100ms", *where, "every")
        name = entry.get("name") or default_name(entry)
        if name in names:
            problem(f"schedule[{index}]: another schedule of this pipeline has the same name {name!r}", *where)
        names.add(name)
        schedules.append(Schedule(name=name, cron=entry.get("cron"), every=every, timezone=zone,
                                  payload=entry.get("payload", {}), misfire=entry.get("misfire", "run_once"),
                                  overlap=entry.get("overlap", "allow")))
    return schedules


def zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _check_schedule_payloads(pipeline: Pipeline, problem: Callable[..., None]) -> None:
    """A tick's payload must be one the pipeline accepts, or every tick would be dead-lettered."""
    check = payload_checker(pipeline)
    for index, schedule in enumerate(pipeline.schedule):
        where = ("schedule", index, "payload")
        if check is not None:
            try:
                check(schedule.payload)
            except ValueError as exc:
                problem(f"schedule[{index}]: {exc}", *where)
        if pipeline.codec != "json":
            continue  # only the codec's plugin can encode it; `buraq serve` does so at start
        try:
            size = len(json.dumps(schedule.payload, separators=(",", ":"), ensure_ascii=False,
                                  allow_nan=False).encode())
        except (TypeError, ValueError) as exc:
            problem(f"schedule[{index}].payload cannot be sent as JSON: {exc}", *where)
            continue
        if size > pipeline.max_payload:
            problem(f"schedule[{index}].payload is {size} bytes; max_payload is {pipeline.max_payload}", *where)


def _cross_checks(pipelines: list[Pipeline], handlers: Container[str] | None,
                  codecs: Container[str] | None) -> list[ConfigProblem]:
    """Problems between pipelines, one line per mistake (a duplicate name is not also a shared-key problem)."""
    problems = []
    by_name: dict[str, Pipeline] = {}
    by_key: dict[str, Pipeline] = {}
    for pipeline in pipelines:
        if handlers is not None and pipeline.handler not in handlers:
            problems.append(_problem_at(pipeline.location("handler"), f"pipeline {pipeline.name!r}: unknown handler "
                                                                      f"{pipeline.handler!r} (see `buraq plugins`)"))
        if codecs is not None and pipeline.codec not in codecs:
            problems.append(_problem_at(pipeline.location("codec"), f"pipeline {pipeline.name!r}: unknown codec "
                                                                    f"{pipeline.codec!r}"))
        if pipeline.name in by_name:
            problems.append(_problem_at(pipeline.location("name"), f"duplicate pipeline name {pipeline.name!r} "
                                        f"(also defined at {by_name[pipeline.name].location('name')})"))
            continue
        by_name[pipeline.name] = pipeline
        for role, key in (("stream", pipeline.stream), ("dlq", pipeline.dlq), ("delayed set", pipeline.delayed),
                          ("consumers hash", pipeline.consumers), ("schedules hash", pipeline.schedules)):
            other = by_key.setdefault(key, pipeline)
            if other is not pipeline:
                where = pipeline.location("dlq" if role == "dlq" else "stream")
                problems.append(_problem_at(where, f"pipeline {pipeline.name!r} uses {key!r} as its {role}, which "
                                                  f"pipeline {other.name!r} ({other.source}) uses too"))
                break  # the other keys follow from the same mistake
    for location, message in outputs.problems(pipelines):
        problems.append(_problem_at(location, message))
    return problems


def _problem_at(location: str, message: str) -> ConfigProblem:
    path, line = _split_source(location)
    return ConfigProblem(path, line, message)


def _split_source(source: str) -> tuple[str, int | None]:
    path, _, line = source.rpartition(":")
    return (path, int(line)) if line.isdigit() else (source, None)
