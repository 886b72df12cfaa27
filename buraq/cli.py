"""The ``buraq`` command line. Exit codes: 0 ok, 1 user error, 3 bug, 130 interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

from buraq import cli_operations as operations, connection
from buraq.bench import add_arguments as add_bench_arguments
from buraq.config import find_pipeline, load_pipelines
from buraq.durations import parse_duration
from buraq.embedded import configured_or_embedded
from buraq.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_USER_ERROR, BuraqError, ConfigError
from buraq.plugins import load_plugins
from buraq.web.auth import Policy

log = logging.getLogger("buraq.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem.render(), file=sys.stderr)
        return EXIT_USER_ERROR
    except BuraqError as exc:
        print(f"buraq: {connection.redact(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (RedisConnectionError, RedisTimeout) as exc:
        where = connection.redact(connection.configured_url(getattr(args, "redis_url", None)) or "embedded Redis")
        print(f"buraq: cannot reach Redis at {where}: {connection.redact(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception:
        print(connection.redact(traceback.format_exc()), file=sys.stderr)
        print("buraq: internal error (a bug); please report it with the traceback above", file=sys.stderr)
        return EXIT_BUG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buraq", description="YAML pipelines on Redis Streams.",
                                     epilog="Exit codes: 0 ok, 1 user error, 2 usage error, 3 bug, 130 interrupted.")
    levels = ["debug", "info", "warning", "error"]
    parser.add_argument("--log-level", default=os.environ.get("BURAQ_LOG_LEVEL", "info"), choices=levels)
    # Also accepted after the command name (`buraq serve --log-level debug`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=levels)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common])

    serve = command("serve", help="run pipelines until SIGTERM/SIGINT")
    serve.add_argument("paths", nargs="*", default=["pipelines"], help="pipeline files or folders (default: pipelines)")
    _add_redis(serve)
    _add_plugins_dir(serve)
    serve.add_argument("--listen", default=os.environ.get("BURAQ_LISTEN", "127.0.0.1:2112"),
                       help="HOST:PORT for the dashboard and /metrics (default 127.0.0.1:2112); 'off' to disable")
    serve.add_argument("--dashboard", choices=["on", "off"], default=os.environ.get("BURAQ_DASHBOARD", "on"),
                       help="serve the dashboard and /api beside /metrics (default on)")
    serve.add_argument("--dashboard-token-file", help="read the dashboard token from this file "
                       "(default: $BURAQ_DASHBOARD_TOKEN; required when --listen is not loopback)")
    serve.add_argument("--grace", default="30s", help="how long running tasks may finish after SIGTERM (default 30s)")
    serve.add_argument("--burst", action="store_true", help="exit once every pipeline is empty and idle")
    serve.add_argument("--consumer", help="consumer name in the group (default HOSTNAME-PID)")
    serve.add_argument("--processes", default=os.environ.get("BURAQ_PROCESSES", "1"),
                       help="worker processes under one supervisor: a number, or 'auto' for one per core (default 1)")
    serve.set_defaults(run=_serve)

    bench = command("bench", help="measure enqueue, drain, latency and memory; write a JSON result")
    _add_redis(bench)
    add_bench_arguments(bench)
    bench.set_defaults(run=_bench)

    validate = command("validate", help="check pipeline files without touching Redis")
    validate.add_argument("paths", nargs="*", default=["pipelines"])
    _add_plugins_dir(validate)
    validate.set_defaults(run=_validate)

    enqueue = command("enqueue", help="add tasks; prints each task id")
    enqueue.add_argument("pipeline")
    enqueue.add_argument("payload", nargs="?", default="-",
                         help="JSON payload; '-' (default) reads one JSON payload per line from stdin")
    enqueue.add_argument("--file", help="read one JSON payload per line from this file")
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--delay", help="start no sooner than this from now, by Redis's clock (30s, 10m, 1h)")
    when.add_argument("--at", help="start no sooner than this time, ISO 8601 with a zone (2026-12-01T09:00:00Z)")
    when.add_argument("--key", help="idempotency key: within the pipeline's dedup.window a repeat prints the first "
                                    "task's id and adds nothing (one payload only)")
    _add_pipelines(enqueue)
    _add_redis(enqueue)
    enqueue.set_defaults(run=_enqueue)

    plugins = command("plugins", help="list handlers and the plugin each came from")
    _add_plugins_dir(plugins)
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(run=_plugins)

    schedule = command("schedule", help="inspect schedules")
    schedule_commands = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    schedule_list = schedule_commands.add_parser("list", help="each schedule's last and next fire times",
                                                 parents=[common])
    schedule_list.add_argument("--count", type=int, default=3, help="how many next fire times to show")
    schedule_list.add_argument("--json", action="store_true")
    _add_pipelines(schedule_list)
    _add_redis(schedule_list)
    schedule_list.set_defaults(run=operations.schedule_list)

    status = command("status", help="per pipeline: queued, pending, delayed, dead-lettered, consumers")
    status.add_argument("--json", action="store_true")
    _add_pipelines(status)
    _add_redis(status)
    status.set_defaults(run=operations.status)

    inspect = command("inspect", help="where one task is now: queued, pending (and where), delayed, dead-lettered")
    inspect.add_argument("task_id")
    inspect.add_argument("--json", action="store_true")
    _add_pipelines(inspect)
    _add_redis(inspect)
    inspect.set_defaults(run=operations.inspect)

    dlq = command("dlq", help="read a pipeline's dead-letter stream")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dlq_list = dlq_commands.add_parser("list", help="newest dead-lettered tasks first", parents=[common])
    dlq_list.add_argument("pipeline")
    dlq_list.add_argument("--count", type=int, default=20)
    dlq_list.add_argument("--json", action="store_true", help="one JSON object per line, with payload and traceback")
    _add_pipelines(dlq_list)
    _add_redis(dlq_list)
    dlq_list.set_defaults(run=operations.dlq_list)

    dlq_show = dlq_commands.add_parser("show", help="one dead-lettered task in full, traceback included",
                                       parents=[common])
    dlq_show.add_argument("pipeline")
    dlq_show.add_argument("id", help="a task id or a DLQ entry id")
    dlq_show.add_argument("--json", action="store_true")
    _add_pipelines(dlq_show)
    _add_redis(dlq_show)
    dlq_show.set_defaults(run=operations.dlq_show)

    for action, help_text in (("replay", "put dead-lettered tasks back on their stream (same task id, attempt 1)"),
                              ("purge", "delete dead-lettered tasks for good")):
        chosen = dlq_commands.add_parser(action, help=help_text, parents=[common])
        chosen.add_argument("pipeline")
        which = chosen.add_mutually_exclusive_group(required=True)
        which.add_argument("--id", action="append", metavar="ID", help="a task id or DLQ entry id (repeatable)")
        which.add_argument("--error-type", help="every entry whose error_type is this (e.g. TimeoutError)")
        which.add_argument("--reason", help="every entry with this reason (e.g. handler_error, decode)")
        which.add_argument("--all", action="store_true", help="every entry")
        chosen.add_argument("--json", action="store_true")
        if action == "purge":
            chosen.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        _add_pipelines(chosen)
        _add_redis(chosen)
        chosen.set_defaults(run=operations.dlq_replay if action == "replay" else operations.dlq_purge)

    from buraq.authoring.commands import add_commands  # schema, echo, init, test

    add_commands(command, _add_plugins_dir, _add_redis)
    return parser


def _add_redis(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: $BURAQ_REDIS_URL, $REDIS_URL, else embedded)")


def _add_plugins_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins-dir", default=os.environ.get("BURAQ_PLUGINS_DIR", "plugins"),
                        help="folder of single-file .py plugins (default: plugins)")


def _add_pipelines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipelines", default=os.environ.get("BURAQ_PIPELINES", "pipelines"),
                        help="where pipeline files are (default: pipelines)")


def _serve(args: argparse.Namespace) -> int:
    from buraq.lifetime import watch_parent
    from buraq.runtime import ServeOptions, serve
    from buraq.supervisor import SUPERVISED_ENV, supervise

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload before serving has nothing to reload; never die of it

    registry = load_plugins(args.plugins_dir)
    pipelines = load_pipelines(args.paths, handlers=registry.handlers, codecs=registry.codecs,
                               options_schemas=registry.options_schemas())
    if not pipelines:
        raise BuraqError(f"no pipelines found in {', '.join(args.paths)}")
    listen = _listen_address(args.listen)
    processes = _process_count(args.processes)
    policy = _dashboard_policy(args, listen)  # refuse an unprotected dashboard before anything starts
    with configured_or_embedded(args.redis_url) as url:
        options = ServeOptions(redis_url=url, listen=listen, grace=_duration_option("--grace", args.grace),
                               burst=args.burst, consumer=args.consumer, plugins_dir=args.plugins_dir,
                               dashboard=policy, paths=tuple(args.paths))
        if processes > 1:
            code = asyncio.run(supervise(args.paths, pipelines, registry, options, processes, args.log_level))
        else:
            if os.environ.get(SUPERVISED_ENV, "").isdigit():  # a child of `serve --processes`: drain when it is gone
                watch_parent(int(os.environ[SUPERVISED_ENV]), lambda: os.kill(os.getpid(), signal.SIGTERM))
            code = asyncio.run(serve(pipelines, registry, options))
    # A handler thread still running (one that timed out, or outlived the grace period) would keep
    # the interpreter alive at exit. Its task already failed or stays pending in Redis, and
    # everything buraq owes Redis is done, so end the process now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _process_count(text: str) -> int:
    if text == "auto":
        return os.cpu_count() or 1
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise BuraqError(f"--processes wants a number from 1 to 256 or 'auto', got {text!r}")
    return int(text)


def _dashboard_policy(args: argparse.Namespace, listen: tuple[str, int] | None) -> Policy | None:
    if listen is None or args.dashboard == "off":
        return None
    token = os.environ.get("BURAQ_DASHBOARD_TOKEN") or None
    if args.dashboard_token_file:
        try:
            token = Path(args.dashboard_token_file).read_text().strip()
        except OSError as exc:
            raise BuraqError(f"--dashboard-token-file: {exc}") from None
    return Policy.for_listener(listen[0], token)


def _bench(args: argparse.Namespace) -> int:
    from buraq.bench import run

    with configured_or_embedded(args.redis_url) as url:
        return run(args, url)


def _listen_address(text: str) -> tuple[str, int] | None:
    if text.lower() in ("off", "none", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise BuraqError(f"--listen wants HOST:PORT, got {text!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def _validate(args: argparse.Namespace) -> int:
    registry = load_plugins(args.plugins_dir)
    pipelines = load_pipelines(args.paths, handlers=registry.handlers, codecs=registry.codecs,
                               options_schemas=registry.options_schemas())
    print(f"ok: {len(pipelines)} pipeline(s)", file=sys.stderr)
    return 0


def _enqueue(args: argparse.Namespace) -> int:
    from buraq.client import AsyncClient

    pipelines = load_pipelines([args.pipelines])
    pipeline = find_pipeline(pipelines, args.pipeline)
    payloads = list(_payloads(args))

    delay = _duration_option("--delay", args.delay) if args.delay is not None else None
    at = _parse_time(args.at) if args.at is not None else None

    if args.key is not None and len(payloads) != 1:
        raise BuraqError(f"--key takes exactly one payload, got {len(payloads)}")

    async def run(url: str) -> list[str]:
        async with AsyncClient(url, pipelines) as client:
            if args.key is not None:
                return [await client.enqueue(pipeline.name, payloads[0], key=args.key)]
            if delay is not None or at is not None:
                return await client.enqueue_many(pipeline.name, payloads, delay=delay, at=at)
            if len(payloads) == 1:
                return [await client.enqueue(pipeline.name, payloads[0])]
            return await client.enqueue_many(pipeline.name, payloads)

    with configured_or_embedded(args.redis_url) as url:
        for task_id in asyncio.run(run(url)):
            print(task_id)
    return 0


def _duration_option(option: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BuraqError(f"{option}: {exc}") from None


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise BuraqError(f"--at: {text!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise BuraqError(f"--at: {text!r} has no time zone; add Z or an offset like +01:00")
    return moment


def _payloads(args: argparse.Namespace) -> Iterator[Any]:
    if args.file or args.payload == "-":
        source = open(args.file, encoding="utf-8") if args.file else sys.stdin
        name = args.file or "<stdin>"
        with source:
            for number, line in enumerate(source, 1):
                if line.strip():
                    yield _parse_json(line, f"{name}:{number}")
        return
    yield _parse_json(args.payload, "payload")


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuraqError(f"{where}: not valid JSON: {exc}") from None


def _plugins(args: argparse.Namespace) -> int:
    registry = load_plugins(args.plugins_dir)
    rows = [{"handler": h.name, "kind": "async" if h.is_async else "sync", "plugin": h.plugin}
            for h in sorted(registry.handlers.values(), key=lambda h: h.name)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["handler"]) for r in rows), default=7)
    print(f"{'HANDLER':<{width}}  KIND   PLUGIN")
    for row in rows:
        print(f"{row['handler']:<{width}}  {row['kind']:<5}  {row['plugin']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
