"""`buraq schema`: the pipeline JSON Schema for editors, with the loaded handlers' options schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from conftest import ROOT, Project
from test_authoring_options import SCHEMA_PLUGIN


def exported(project: Project, *args: str) -> jsonschema.Draft202012Validator:
    result = project.buraq("schema", *args)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_accepts_the_example_pipelines(project: Project) -> None:
    validator = exported(project)
    for path in sorted((ROOT / "pipelines").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        assert not list(validator.iter_errors(document)), path
        assert not list(validator.iter_errors([document, document])), f"{path} as a list"


def test_the_schema_checks_options_per_handler(project: Project) -> None:
    # Given a plugin whose handler registers an options schema
    project.plugin("images.py", SCHEMA_PLUGIN)
    # When the schema is exported, Then it checks that handler's options, and only that handler's
    validator = exported(project)
    good = {"name": "t", "handler": "img.resize", "options": {"width": 10, "quality": 50}}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "options": {"width": 10, "quality": 500}})  # via the plugin's own $ref
    assert not validator.is_valid({**good, "options": {"height": 10}})
    assert validator.is_valid({"name": "t", "handler": "img.free", "options": {"height": 10}})
    assert not validator.is_valid({"name": "t", "handler": "img.free", "pool": 0})  # the pipeline rules still hold


def test_output_writes_a_file(project: Project) -> None:
    project.plugin("images.py", SCHEMA_PLUGIN)
    result = project.buraq("schema", "--output", "buraq.schema.json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    written = json.loads((project.root / "buraq.schema.json").read_text())
    assert written == json.loads(project.buraq("schema").stdout)
    assert any(rule["if"]["properties"]["handler"] == {"const": "img.resize"}
               for rule in written["$defs"]["pipeline"]["allOf"])


def test_a_broken_plugin_fails_the_export(project: Project) -> None:
    project.plugin("broken.py", "raise RuntimeError('no')\n")
    result = project.buraq("schema", "--output", "out.json")
    assert result.returncode == 1
    assert "plugin plugins/broken.py (local plugin) failed to import" in result.stderr
    assert not Path(project.root / "out.json").exists()
