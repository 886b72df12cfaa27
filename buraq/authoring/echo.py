"""`buraq echo`: the pipelines as the engine runs them, with secrets masked.

Defaults are filled in, ``${VAR}`` is interpolated and durations are shown in
seconds. Two rules hide secrets (documented in docs/authoring.md):

- a key anywhere under ``options`` whose name contains a secret word
  (:data:`SECRET_WORDS`, matched per word of the key: ``api_key``, ``apiKey``,
  ``db-password``, but not ``keyspace`` or ``monkey``);
- any value that was filled in from an environment variable whose name
  contains a secret word (``${DB_PASSWORD}``, ``${STRIPE_API_KEY}``), wherever it sits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from buraq.config import Pipeline, find_pipeline_files
from buraq.yamlfile import load_documents

MASK = "***"
SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "pwd", "key", "apikey", "auth",
                          "authorization", "credential", "credentials", "private", "dsn"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# What a secret variable reads as in the second, masked pass over the files: never a real value.
_MASKED_VALUE = "\x00buraq-masked\x00"


def looks_secret(name: str) -> bool:
    """True when one of the words of ``name`` (split at ``_ - .`` and camelCase) is a secret word."""
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(str(name)))


def resolved(pipelines: list[Pipeline], paths: list[str], environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One mapping per pipeline (in load order), secrets replaced by ``***``.

    ``pipelines`` must be what ``load_pipelines(paths)`` returned, so the i-th raw entry
    in the files is the i-th pipeline.
    """
    environ = os.environ if environ is None else environ
    secret_paths = list(_secret_paths(paths, environ))
    return [_masked(_as_mapping(p), secret, ()) for p, secret in zip(pipelines, secret_paths)]


def _as_mapping(p: Pipeline) -> dict[str, Any]:
    backoff = p.retry.backoff
    shown: dict[str, Any] = {
        "name": p.name, "description": p.description, "handler": p.handler, "stream": p.stream, "dlq": p.dlq,
        "codec": p.codec, "pool": p.pool, "timeout": p.timeout, "lease": p.lease, "executor": p.executor,
        "max_payload": p.max_payload,
        "retry": {"attempts": p.retry.attempts, "backoff": {"initial": backoff.initial, "multiplier": backoff.multiplier,
                                                            "max": backoff.max, "jitter": backoff.jitter}},
        "options": dict(p.options),
    }
    if p.payload_schema is not None:
        shown["payload_schema"] = p.payload_schema
    if p.schedule:
        shown["schedule"] = [{"name": s.name, **({"cron": s.cron} if s.cron else {"every": s.every}),
                              "timezone": s.timezone, "payload": s.payload, "misfire": s.misfire,
                              "overlap": s.overlap} for s in p.schedule]
    shown["source"] = p.source
    return shown


def _masked(value: Any, secret: set[tuple[Any, ...]], path: tuple[Any, ...]) -> Any:
    if path in secret or (path[:1] == ("options",) and len(path) > 1 and looks_secret(path[-1])):
        return MASK
    if isinstance(value, Mapping):
        return {key: _masked(item, secret, path + (key,)) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, secret, path + (index,)) for index, item in enumerate(value)]
    return value


def _secret_paths(paths: list[str], environ: Mapping[str, str]) -> Iterator[set[tuple[Any, ...]]]:
    """Per pipeline entry: the paths of values that came from a secret variable.

    The files are read twice, once as they are and once with every secret variable
    reading as a marker; interpolation never changes a file's shape, so the values
    that differ are exactly those a secret variable went into.
    """
    masking = _MaskingEnviron(environ)
    for file in find_pipeline_files(paths):
        plain, masked = load_documents(str(file), environ), load_documents(str(file), masking)
        for real_doc, masked_doc in zip(plain, masked):
            real_value, masked_value = real_doc.value, masked_doc.value
            if isinstance(real_value, dict):
                real_value, masked_value = [real_value], [masked_value]
            for real, mask in zip(real_value or [], masked_value or []):
                yield set(_differences(real, mask, ()))


def _differences(real: Any, masked: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    if isinstance(real, dict) and isinstance(masked, dict):
        for key in real:
            yield from _differences(real[key], masked.get(key), path + (key,))
    elif isinstance(real, list) and isinstance(masked, list):
        for index, (a, b) in enumerate(zip(real, masked)):
            yield from _differences(a, b, path + (index,))
    elif real != masked or type(real) is not type(masked):
        yield path


class _MaskingEnviron(Mapping[str, str]):
    """The environment, except that secret-looking variables read as a marker."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        value = self._environ[name]
        return _MASKED_VALUE if looks_secret(name) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)
