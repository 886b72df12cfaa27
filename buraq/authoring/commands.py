"""The authoring subcommands of the CLI: `schema`, `echo`, `init` and `test`.

``add_commands`` registers them on the parser ``buraq.cli`` builds; each ``_run_*``
function is the body of one command and returns its exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from buraq.config import Pipeline, load_pipelines
from buraq.durations import parse_duration
from buraq.embedded import EmbeddedRedis
from buraq.errors import BuraqError, ConfigError
from buraq.plugins import Registry, load_plugins

EXIT_TESTS_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_TESTS = 5
TEST_DIR_VARIABLE = "BURAQ_TEST_DIR"


def add_commands(command: Callable[..., argparse.ArgumentParser],
                 add_plugins_dir: Callable[[argparse.ArgumentParser], None],
                 add_redis: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the authoring commands through the CLI's own ``command`` factory and option helpers."""
    schema = command("schema", help="print the pipeline JSON Schema with every handler's options schema")
    schema.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    add_plugins_dir(schema)
    schema.set_defaults(run=_run_schema)

    echo = command("echo", help="print pipelines as they run: defaults filled, variables set, secrets masked")
    echo.add_argument("paths", nargs="*", default=["pipelines"])
    echo.add_argument("--json", action="store_true", help="JSON instead of YAML")
    add_plugins_dir(echo)
    echo.set_defaults(run=_run_echo)

    init = command("init", help="scaffold a pipeline, a plugin package and its test cases here")
    init.add_argument("name", help="lower-case name of the pipeline and its plugin")
    init.set_defaults(run=_run_init)

    test = command("test", help="run the test cases in PATH/tests/ against the real handlers")
    test.add_argument("path", nargs="?", default="pipelines", help="pipelines folder, or one test file")
    test.add_argument("--timeout", default="5m", help="give up on cases not ended after this (default 5m)")
    add_plugins_dir(test)
    add_redis(test)
    test.set_defaults(run=_run_test)


def _loaded(paths: list[str], plugins_dir: str) -> tuple[Registry, list[Pipeline]]:
    """Plugins, then the pipelines checked against them: handler names, codecs and options schemas."""
    registry = load_plugins(plugins_dir)
    pipelines = load_pipelines(paths, handlers=registry.handlers, codecs=registry.codecs,
                               options_schemas=registry.options_schemas())
    return registry, pipelines


def _run_schema(args: argparse.Namespace) -> int:
    from buraq.authoring.schema_export import editor_schema

    text = json.dumps(editor_schema(load_plugins(args.plugins_dir).options_schemas()), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _run_echo(args: argparse.Namespace) -> int:
    from buraq.authoring.echo import resolved

    _, pipelines = _loaded(args.paths, args.plugins_dir)
    shown = resolved(pipelines, args.paths)
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True))
    return 0


def _run_init(args: argparse.Namespace) -> int:
    from buraq.authoring.scaffold import scaffold

    for path in scaffold(args.name, Path.cwd()):
        print(f"created {path.relative_to(Path.cwd())}")
    print(f"next: pip install -e plugins/buraq-{args.name} && buraq validate && buraq test",
          file=sys.stderr)
    return 0


def _run_test(args: argparse.Namespace) -> int:
    """Exit 0 all passed, 1 some failed, 2 bad input (arguments, pipelines, test files, plugins), 5 no cases."""
    try:
        try:
            timeout = parse_duration(args.timeout)
        except ValueError as exc:
            raise BuraqError(f"--timeout: {exc}") from None
        code = _test(args, timeout)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        code = EXIT_USAGE
    except BuraqError as exc:
        print(f"buraq: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    # A handler thread still running (past its timeout) would keep the interpreter alive: end now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _test(args: argparse.Namespace, timeout: float) -> int:
    from buraq.authoring.cases import find_test_files, load_cases
    from buraq.authoring.report import report
    from buraq.authoring.runner import run_cases

    folder, files = find_test_files(args.path)
    with tempfile.TemporaryDirectory(prefix="buraq-test-") as home:
        # A scratch folder pipelines and cases may name as ${BURAQ_TEST_DIR}; gone after the run.
        os.environ[TEST_DIR_VARIABLE] = str(Path(home) / "files")
        (Path(home) / "files").mkdir()
        registry, pipelines = _loaded([str(folder)], args.plugins_dir)
        cases = load_cases(files, [p.name for p in pipelines])
        if not cases:
            print(f"no test cases in {Path(folder) / 'tests'}", file=sys.stderr)
            return EXIT_NO_TESTS
        if args.log_level != "debug":  # retries and dead letters are what tests are about: not warnings here
            logging.getLogger("buraq").setLevel(logging.ERROR)
        started = time.perf_counter()
        by_name = {p.name: p for p in pipelines}
        if args.redis_url:
            results = asyncio.run(run_cases(cases, by_name, registry, args.redis_url, timeout))
        else:
            with EmbeddedRedis(Path(home) / "redis") as url:
                results = asyncio.run(run_cases(cases, by_name, registry, url, timeout))
    failed = report(cases, results, time.perf_counter() - started, sys.stdout)
    return EXIT_TESTS_FAILED if failed else 0
