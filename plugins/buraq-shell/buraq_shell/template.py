"""Build a command's extra arguments from templates and payload fields, safely.

No shell ever sees the result: each template makes exactly one argv element, so a payload
value cannot add arguments, redirect, or run anything. What it could still do is look like
an option to the program (``--delete-all``); a value that would start an argument with ``-``
is therefore refused unless a literal ``--`` (end of options) comes before it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}|[{}]")


class TemplateError(ValueError):
    """A template or the payload cannot make a safe argument; the message says which and why."""


def render_args(templates: list[str], payload: Any, options_end: bool) -> list[str]:
    """One argument per template; ``options_end`` says a ``--`` already came before them."""
    rendered: list[str] = []
    for index, template in enumerate(templates):
        argument, starts_with_value = _render(template, payload, f"args[{index}]")
        if "\x00" in argument:
            raise TemplateError(f"args[{index}]: the value holds a NUL byte, which no argument can")
        if starts_with_value and argument.startswith("-") and not options_end:
            raise TemplateError(f"args[{index}]: the value starts with '-', which the command would read as "
                                "an option; put '--' before it in command or args")
        options_end = options_end or template == "--"
        rendered.append(argument)
    return rendered


def _render(template: str, payload: Any, where: str) -> tuple[str, bool]:
    parts: list[str] = []
    starts_with_value = False
    position = 0
    for match in _FIELD.finditer(template):
        parts.append(template[position:match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif match.group(1) is None:
            raise TemplateError(f"{where}: a lone {token!r} in {template!r} (write {token * 2} for a literal one)")
        else:
            starts_with_value = starts_with_value or not "".join(parts)
            parts.append(_field(payload, match.group(1), where))
    parts.append(template[position:])
    return "".join(parts), starts_with_value


def _field(payload: Any, path: str, where: str) -> str:
    value = payload
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise TemplateError(f"{where}: the payload has no field {path!r}")
    if isinstance(value, bool):
        return json.dumps(value)  # true / false, as the producer wrote it
    if isinstance(value, (str, int, float)):
        return str(value)
    kind = "null" if value is None else f"a {type(value).__name__}"
    raise TemplateError(f"{where}: payload field {path!r} is {kind}, not a string, number or boolean")
