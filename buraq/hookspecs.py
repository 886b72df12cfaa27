"""The hooks a buraq plugin may implement: this is the public plugin contract.

Each hook receives a ``register`` callback instead of returning values, so the
plugin manager owns validation and name collisions in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("buraq")
hookimpl = pluggy.HookimplMarker("buraq")


@hookspec
def register_handlers(register: Callable[..., None]) -> None:
    """Register task handlers: ``register("images.resize", resize)``.

    :param register: call as ``register(name, function)`` or
        ``register(name, function, options_schema={...})``; ``function(task)`` may be
        ``def`` (run in a thread) or ``async def`` (awaited on the event loop). The optional
        ``options_schema`` is a JSON Schema (draft 2020-12) that every pipeline's ``options:``
        using this handler must match; ``buraq validate`` checks it, ``buraq schema`` exports it.
    """


@hookspec
def register_codecs(register: Callable[..., None]) -> None:
    """Register payload codecs: ``register("json", JsonCodec())``.

    :param register: call as ``register(name, codec)``; a codec has
        ``encode(value) -> bytes`` and ``decode(data: bytes) -> value``.
    """


@hookspec
def register_observers(register: Callable[[Any], None]) -> None:
    """Register objects that watch task life cycles (metrics, logging, tracing).

    :param register: call as ``register(observer)``; the engine calls whichever of
        ``task_started``, ``task_succeeded``, ``task_failed``, ``task_retried``,
        ``task_dead_lettered``, ``tasks_reclaimed`` and ``entry_trimmed`` the observer
        defines. Observers must be fast and must not raise.
    """
