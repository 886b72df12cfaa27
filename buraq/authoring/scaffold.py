"""`buraq init NAME`: a pipeline, a plugin package with its handler, and test cases that pass.

The files are written only when none of them exists yet, so init never overwrites work.
"""

from __future__ import annotations

import re
from pathlib import Path

from buraq.errors import BuraqError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

PIPELINE = """\
# yaml-language-server: $schema=../buraq.schema.json
# The {name} pipeline. Check it with `buraq validate`, test it with `buraq test`,
# and see it resolved (defaults filled, secrets masked) with `buraq echo pipelines/{name}.yaml`.
name: {name}
description: Greet whoever the payload names.
handler: {name}.greet
pool: 4
timeout: 10s
retry:
  attempts: 3
  backoff: {{initial: 1s, multiplier: 2, max: 1m, jitter: 0.1}}
options:
  greeting: ${{{env}_GREETING:Hello}}
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "buraq-{dist}"
version = "0.1.0"
description = "buraq handlers for the {name} pipeline."
requires-python = ">=3.11"
dependencies = ["buraq"]

[project.entry-points.buraq]
{name} = "buraq_{name}"

[tool.setuptools]
packages = ["buraq_{name}"]
"""

PLUGIN = '''\
"""Handlers for the {name} pipeline, registered with buraq through the `buraq` entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import buraq

# What a pipeline using {name}.greet may put under `options:`; `buraq validate` checks it.
GREET_OPTIONS = {{
    "type": "object",
    "properties": {{
        "greeting": {{"type": "string", "minLength": 1, "description": "The word to greet with."}},
    }},
    "additionalProperties": False,
}}


def greet(task: buraq.Task) -> dict[str, Any]:
    """Return a greeting; the return value is what `output:` in the test cases compares against."""
    payload = task.payload if isinstance(task.payload, dict) else {{}}
    who = payload.get("name")
    if not isinstance(who, str) or not who:
        # Retrying cannot fix a payload without a name: dead-letter it at once (reason: rejected).
        raise buraq.Reject("the payload needs a non-empty string 'name'")
    return {{"greeting": f"{{task.options.get('greeting', 'Hello')}}, {{who}}!"}}


@buraq.hookimpl
def register_handlers(register: Callable[..., None]) -> None:
    register("{name}.greet", greet, options_schema=GREET_OPTIONS)
'''

TESTS = """\
# Run with `buraq test` (real handler, throwaway Redis). See docs/authoring.md.
pipeline: {name}
cases:
  - name: greets by name
    input: {{name: Ada}}
    output: {{greeting: "Hello, Ada!"}}
  - name: greeting comes from the options
    options: {{greeting: Salaam}}
    input: {{name: Grace}}
    output: {{greeting: "Salaam, Grace!"}}
  - name: a payload without a name is dead-lettered at once
    input: {{}}
    outcome: dead
    reason: rejected
    error_type: Reject
    attempts: 1
"""


def scaffold(name: str, root: Path) -> list[Path]:
    """Write the files for ``name`` under ``root``; refuse (writing nothing) if any already exists."""
    if not NAME.match(name):
        raise BuraqError(f"init: {name!r} is not a usable name: use lower-case letters, digits and _, "
                         "starting with a letter (it becomes the pipeline, handler prefix and Python package)")
    plugin = root / "plugins" / f"buraq-{name}"
    files = {
        root / "pipelines" / f"{name}.yaml": PIPELINE.format(name=name, env=name.upper()),
        root / "pipelines" / "tests" / f"{name}.yaml": TESTS.format(name=name),
        plugin / "pyproject.toml": PYPROJECT.format(name=name, dist=name.replace("_", "-")),
        plugin / f"buraq_{name}" / "__init__.py": PLUGIN.format(name=name),
    }
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise BuraqError(f"init: refusing to overwrite {', '.join(existing)}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
