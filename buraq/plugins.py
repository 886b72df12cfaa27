"""Find plugins and collect what they register.

Plugins come from three places, loaded in this order: the built-ins (which
are plugins like any other), installed packages declaring the ``buraq``
entry-point group, and single ``.py`` files in a plugins folder. Loading does
nothing until asked and is harmless twice. ``BURAQ_PLUGINS`` (comma-separated
entry-point names) narrows which installed plugins load.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pluggy

from buraq import hookspecs
from buraq.errors import PluginError

ENTRY_POINT_GROUP = "buraq"
BUILTIN_MODULES = ("buraq.builtin.handlers", "buraq.builtin.codecs", "buraq.builtin.observers")


@dataclass(frozen=True)
class Handler:
    name: str
    function: Callable[..., Any]
    is_async: bool
    plugin: str
    options_schema: Mapping[str, Any] | bool | None = None  # JSON Schema for a pipeline's `options:`


@dataclass
class Registry:
    """Everything the loaded plugins registered, with the plugin each came from."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    codecs: dict[str, tuple[Any, str]] = field(default_factory=dict)
    observers: list[tuple[Any, str]] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)

    def handler(self, name: str) -> Handler:
        try:
            return self.handlers[name]
        except KeyError:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise PluginError(f"unknown handler {name!r}; registered handlers: {known}") from None

    def codec(self, name: str) -> Any:
        try:
            return self.codecs[name][0]
        except KeyError:
            raise PluginError(f"unknown codec {name!r}; registered: {', '.join(sorted(self.codecs))}") from None

    def options_schemas(self) -> dict[str, Mapping[str, Any] | bool]:
        """Handler name -> the JSON Schema its plugin gave for a pipeline's ``options:``."""
        return {h.name: h.options_schema for h in self.handlers.values() if h.options_schema is not None}


def load_plugins(plugins_dir: str | os.PathLike[str] | None = None, entry_points: bool = True) -> Registry:
    """Load the built-ins, installed plugins and ``plugins_dir`` files; return what they register."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    for module_name in BUILTIN_MODULES:
        manager.register(importlib.import_module(module_name), name=module_name)
    if entry_points:
        for name, module in _entry_point_plugins():
            _register(manager, module, name)
    if plugins_dir is not None:
        for name, module in _directory_plugins(Path(plugins_dir)):
            _register(manager, module, name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {manager.get_name(exc.plugin) or exc.plugin!r}: {exc}") from None
    return _collect(manager)


def _register(manager: pluggy.PluginManager, module: ModuleType, name: str) -> None:
    try:
        manager.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from None
    except ValueError as exc:
        raise PluginError(f"plugin {name!r} is loaded twice: {exc}") from None


def _entry_point_plugins() -> Iterable[tuple[str, ModuleType]]:
    allowed = os.environ.get("BURAQ_PLUGINS")
    wanted = {part.strip() for part in allowed.split(",") if part.strip()} if allowed is not None else None
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if wanted is not None and entry_point.name not in wanted:
            continue
        source = f"{entry_point.name} ({entry_point.value}"
        dist = getattr(entry_point, "dist", None)
        source += f", from package {dist.name} {dist.version})" if dist else ")"
        try:
            loaded = entry_point.load()
        except BaseException as exc:  # a broken plugin must name itself, whatever it raised
            raise PluginError(f"plugin {source} failed to import:\n{_format(exc)}") from None
        yield source, loaded


def _directory_plugins(directory: Path) -> Iterable[tuple[str, ModuleType]]:
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module_name = f"buraq_local_plugins.{path.stem}"
        source = f"{path} (local plugin)"
        if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
            yield source, sys.modules[module_name]
            continue
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"plugin {source} cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            del sys.modules[module_name]
            raise PluginError(f"plugin {source} failed to import:\n{_format(exc)}") from None
        yield source, module


def _collect(manager: pluggy.PluginManager) -> Registry:
    registry = Registry()
    for name, plugin in manager.list_name_plugin():  # registration order, so messages are stable
        registry.plugins.append(name)
        hooks = manager.hook
        _call(hooks.register_handlers, plugin, name,
              lambda n, f, options_schema=None, _p=name: _add_handler(registry, n, f, _p, options_schema))
        _call(hooks.register_codecs, plugin, name, lambda n, c, _p=name: _add_codec(registry, n, c, _p))
        _call(hooks.register_observers, plugin, name, lambda o, _p=name: registry.observers.append((o, _p)))
    return registry


def _call(hook: pluggy.HookCaller, plugin: object, name: str, register: Callable[..., None]) -> None:
    """Call one plugin's implementation of ``hook`` so errors can name that plugin."""
    for impl in hook.get_hookimpls():
        if impl.plugin is plugin:
            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {name} failed in {hook.name}:\n{_format(exc)}") from None


def _add_handler(registry: Registry, name: str, function: Callable[..., Any], plugin: str,
                 options_schema: Any = None) -> None:
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin} registered a handler with an invalid name {name!r}")
    if not callable(function):
        raise PluginError(f"plugin {plugin} registered handler {name!r} as {function!r}, which is not callable")
    existing = registry.handlers.get(name)
    if existing is not None:
        raise PluginError(f"handler {name!r} is registered twice: by {existing.plugin} and by {plugin}")
    _check_options_schema(name, options_schema, plugin)
    is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None))
    registry.handlers[name] = Handler(name, function, is_async, plugin, options_schema)


def _check_options_schema(handler: str, schema: Any, plugin: str) -> None:
    """A broken schema is the plugin's bug: say so now, not as a confusing pipeline error later."""
    if schema is None:
        return
    if not isinstance(schema, (Mapping, bool)):
        raise PluginError(f"plugin {plugin} registered handler {handler!r} with an options_schema that is "
                          f"{type(schema).__name__}, not a JSON Schema mapping")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        raise PluginError(f"plugin {plugin} registered handler {handler!r} with an invalid options_schema"
                          f"{f' (at {where})' if where else ''}: {exc.message}") from None


def _add_codec(registry: Registry, name: str, codec: Any, plugin: str) -> None:
    if name in registry.codecs:
        raise PluginError(f"codec {name!r} is registered twice: by {registry.codecs[name][1]} and by {plugin}")
    registry.codecs[name] = (codec, plugin)


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()
