"""Handler options schemas: a plugin registers one, `buraq validate` and `buraq serve` check `options:` with it."""

from __future__ import annotations

import pytest

from conftest import Project

SCHEMA_PLUGIN = '''
import buraq

RESIZE_OPTIONS = {
    "type": "object",
    "required": ["width"],
    "additionalProperties": False,
    "properties": {
        "width": {"type": "integer", "minimum": 1},
        "format": {"enum": ["png", "jpeg"]},
        "quality": {"$ref": "#/$defs/percent"},
    },
    "$defs": {"percent": {"type": "integer", "minimum": 0, "maximum": 100}},
}

async def resize(task):
    return {"width": task.options["width"]}

async def free(task):
    return None

@buraq.hookimpl
def register_handlers(register):
    register("img.resize", resize, options_schema=RESIZE_OPTIONS)
    register("img.free", free)
'''


@pytest.fixture
def images(project: Project) -> Project:
    project.plugin("images.py", SCHEMA_PLUGIN)
    return project


def test_options_matching_the_schema_are_valid(images: Project) -> None:
    images.pipeline("thumbs", """\
        handler: img.resize
        options:
          width: 128
          format: png
          quality: 80
    """)
    images.pipeline("anything", "handler: img.free\noptions: {whatever: [1, 2]}\n")
    result = images.buraq("validate", "pipelines")
    assert result.returncode == 0, result.stderr
    assert "ok: 2 pipeline(s)" in result.stderr


def test_each_broken_option_is_reported_at_its_line(images: Project) -> None:
    # Given options that break the handler's schema in three ways
    images.pipeline("thumbs", """\
        handler: img.resize
        pool: 2
        options:
          width: wide
          format: gif
          quality: 101
          colour: red
    """)
    # When validated, Then every problem names the file and the line of the key
    result = images.buraq("validate", "pipelines")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "pipelines/thumbs.yaml:5: options.width: 'wide' is not of type 'integer'" in lines
    assert "pipelines/thumbs.yaml:6: options.format: 'gif' is not one of ['png', 'jpeg']" in lines
    assert "pipelines/thumbs.yaml:7: options.quality: 101 is greater than the maximum of 100" in lines
    assert "pipelines/thumbs.yaml:8: unknown key options.colour (allowed: format, quality, width)" in lines


def test_missing_options_are_reported_at_the_pipeline(images: Project) -> None:
    images.pipeline("thumbs", "handler: img.resize\n")
    result = images.buraq("validate", "pipelines")
    assert result.returncode == 1
    assert "pipelines/thumbs.yaml:1: options: 'width' is a required property" in result.stderr.splitlines()


def test_serve_refuses_pipelines_whose_options_break_the_schema(images: Project) -> None:
    images.pipeline("thumbs", "handler: img.resize\noptions: {width: 0}\n")
    result = images.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--listen", "off", timeout=60)
    assert result.returncode == 1
    assert "pipelines/thumbs.yaml:3: options.width: 0 is less than the minimum of 1" in result.stderr


@pytest.mark.parametrize(("schema", "message"), [
    ('{"type": "objekt"}', "registered handler 'bad.one' with an invalid options_schema"),
    ('{"properties": {"n": {"minimum": "zero"}}}', "invalid options_schema (at properties/n/minimum)"),
    ('["not", "a", "schema"]', "with an options_schema that is list, not a JSON Schema mapping"),
])
def test_an_invalid_options_schema_is_an_error_naming_the_plugin(project: Project, schema: str, message: str) -> None:
    project.plugin("badschema.py", f'''
import buraq

async def one(task):
    return None

@buraq.hookimpl
def register_handlers(register):
    register("bad.one", one, options_schema={schema})
''')
    project.pipeline("p", "handler: builtin.noop\n")
    for command in (["validate", "pipelines"], ["plugins"]):
        result = project.buraq(*command)
        assert result.returncode == 1, result.stderr
        assert "buraq: plugin plugins/badschema.py (local plugin)" in result.stderr
        assert message in result.stderr
