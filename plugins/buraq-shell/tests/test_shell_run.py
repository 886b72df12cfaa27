"""shell.run called directly, running real commands (sh, python)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import buraq
import buraq_shell
from buraq.plugins import load_plugins
from buraq_shell.template import TemplateError, render_args
from shell_fixtures import gone

PY = sys.executable
ECHO_ARGV = [PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def task(payload: Any = None, attempt: int = 1, **options: Any) -> buraq.Task:
    return buraq.Task(id="1700000000000-0", payload=payload, attempt=attempt, pipeline="jobs", options=options)


def call(one: buraq.Task) -> Any:
    return asyncio.run(buraq_shell.run(one))


def test_payload_on_stdin_and_json_output_with_the_task_in_the_environment() -> None:
    script = ("import json, os, sys; print(json.dumps({'got': json.load(sys.stdin), "
              "'id': os.environ['BURAQ_TASK_ID'], 'attempt': os.environ['BURAQ_ATTEMPT'], "
              "'pipeline': os.environ['BURAQ_PIPELINE']}))")
    result = call(task({"n": 7, "name": "naïve"}, attempt=3, command=[PY, "-c", script], output="json"))
    assert result == {"got": {"n": 7, "name": "naïve"}, "id": "1700000000000-0", "attempt": "3", "pipeline": "jobs"}


def test_text_output_by_default_and_no_stdin_when_asked() -> None:
    assert call(task({"a": 1}, command=["sh", "-c", "echo hello; cat"])) == 'hello\n{"a":1}'
    assert call(task({"a": 1}, command=["sh", "-c", "echo hello; cat"], stdin="none")) == "hello\n"
    assert call(task({"a": 1}, command=["sh", "-c", "echo ignored"], output="none")) is None


def test_env_additions_and_working_directory(tmp_path: Path) -> None:
    out = call(task({}, command=["sh", "-c", 'echo "$GREETING $(pwd)"'], env={"GREETING": "hi there"},
                    cwd=str(tmp_path)))
    assert out == f"hi there {tmp_path.resolve()}\n"


def test_the_workers_own_secrets_stay_out_of_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a worker whose environment holds its Redis URL and dashboard token
    monkeypatch.setenv("REDIS_URL", "redis://default:pw-1@db:6379/0")
    monkeypatch.setenv("BURAQ_DASHBOARD_TOKEN", "token-2-token-2-token-2")
    monkeypatch.setenv("LANG_FOR_TEST", "kept")
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    seen = call(task({}, command=[PY, "-c", script], stdin="none", output="json", env={"API_TOKEN": "given"}))
    # Then the command sees neither, but everything else, its own task id, and what `env` gives it
    assert "REDIS_URL" not in seen and "BURAQ_DASHBOARD_TOKEN" not in seen
    assert (seen["LANG_FOR_TEST"], seen["API_TOKEN"], seen["BURAQ_TASK_ID"]) == ("kept", "given", "1700000000000-0")


def test_args_come_from_payload_fields_as_single_arguments() -> None:
    payload = {"user": {"name": "ada lovelace"}, "n": 3, "flag": True, "note": "-rf; rm -rf / $(id)", "tags": ["a"]}
    args = ["--user={user.name}", "{n}", "{flag}", "{{literal}}", "{tags.0}", "--", "{note}"]
    assert call(task(payload, command=ECHO_ARGV, args=args, stdin="none", output="json")) == [
        "--user=ada lovelace", "3", "true", "{literal}", "a", "--", "-rf; rm -rf / $(id)"]


@pytest.mark.parametrize(("args", "payload", "message"), [
    (["{note}"], {"note": "-rf"}, "args[0]: the value starts with '-'"),
    (["{missing}"], {}, "args[0]: the payload has no field 'missing'"),
    (["x", "{user}"], {"user": {"name": "a"}}, "args[1]: payload field 'user' is a dict, not a string"),
    (["{n}"], {"n": None}, "payload field 'n' is null"),
    (["{n}"], ["not", "a", "mapping"], "the payload has no field 'n'"),
    (["a{b"], {}, "args[0]: a lone '{' in 'a{b' (write {{ for a literal one)"),
    (["{s}"], {"s": "a\x00b"}, "NUL byte"),
])
def test_unsafe_or_impossible_args_reject(args: list[str], payload: Any, message: str) -> None:
    with pytest.raises(buraq.Reject, match="^shell.run: ") as caught:
        call(task(payload, command=["true"], args=args))
    assert message in str(caught.value)


def test_a_dash_value_is_fine_after_a_double_dash_or_inside_an_argument() -> None:
    assert render_args(["{v}"], {"v": "-x"}, options_end=True) == ["-x"]
    assert render_args(["--name={v}"], {"v": "-x"}, options_end=False) == ["--name=-x"]
    with pytest.raises(TemplateError):
        render_args(["{empty}{v}"], {"empty": "", "v": "-x"}, options_end=False)


def test_nonzero_exit_retries_with_the_stderr_tail() -> None:
    script = "import sys; sys.stderr.write('x' * 5000 + ' the end'); sys.exit(3)"
    with pytest.raises(buraq_shell.CommandFailed) as caught:
        call(task({}, command=[PY, "-c", script, "s3cret-arg"], env={"TOKEN": "s3cret-env"}))
    message = str(caught.value)
    assert message.startswith(f"command {PY} exited with 3; stderr: …")
    assert message.endswith("x the end") and len(message) < 700
    assert "s3cret" not in message


def test_exit_code_mapping() -> None:
    def exit_with(code: int, **options: Any) -> None:
        call(task({}, command=["sh", "-c", f"echo oops >&2; exit {code}"], **options))

    with pytest.raises(buraq.Reject, match=r"exited with 64 \(in reject_exit_codes\); stderr: oops"):
        exit_with(64, reject_exit_codes=[64, 65])
    with pytest.raises(buraq_shell.CommandFailed, match="exited with 1"):
        exit_with(1, reject_exit_codes=[64])
    # With retry_exit_codes, only those retry; every other non-zero code rejects
    with pytest.raises(buraq_shell.CommandFailed, match="exited with 75"):
        exit_with(75, retry_exit_codes=[75])
    with pytest.raises(buraq.Reject, match=r"exited with 2 \(not in retry_exit_codes\)"):
        exit_with(2, retry_exit_codes=[75])
    assert call(task({}, command=["sh", "-c", "exit 0"], retry_exit_codes=[75])) == ""


def test_death_by_signal_retries() -> None:
    with pytest.raises(buraq_shell.CommandFailed, match="killed by SIGKILL"):
        call(task({}, command=["sh", "-c", "kill -9 $$"], reject_exit_codes=[137]))


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # Given a command whose child (a grandchild of the worker) would sleep for 30 s
    pid_file = tmp_path / "pid"
    script = f'echo started >&2; sleep 30 & echo $! > {pid_file}; wait'
    # When it runs past its 300 ms timeout
    with pytest.raises(buraq_shell.CommandTimeout, match=r"timed out after 0.3s; .*killed; stderr: started"):
        call(task({}, command=["sh", "-c", script], timeout="300ms"))
    # Then the grandchild was killed with it
    assert gone(int(pid_file.read_text()))


def test_cancelling_the_handler_kills_the_process_group(tmp_path: Path) -> None:
    # Given a running command (the pipeline's own timeout, or a hard stop, cancels the handler)
    pid_file = tmp_path / "pid"
    one = task({}, command=["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], timeout=60)

    async def cancel_soon() -> None:
        running = asyncio.ensure_future(buraq_shell.run(one))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.02)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(cancel_soon())
    assert gone(int(pid_file.read_text()))


def test_too_much_output_fails_and_large_stdin_flows_both_ways() -> None:
    with pytest.raises(buraq_shell.CommandFailed, match=r"stdout passed max_output \(1000 bytes\)"):
        call(task({}, command=[PY, "-c", "print('x' * 100000)"], max_output=1000))
    big = {"blob": "y" * 3_000_000}  # far beyond a pipe's buffer, in and out at once
    assert call(task(big, command=["cat"], output="json", max_output=4_000_000)) == big
    assert call(task(big, command=["true"])) == ""  # a command that reads none of its stdin


def test_json_output_that_is_not_json_fails() -> None:
    with pytest.raises(buraq_shell.CommandFailed, match="stdout is not JSON"):
        call(task({}, command=["echo", "nope"], output="json"))
    assert call(task({}, command=["true"], output="json")) is None


def test_a_command_that_cannot_start_rejects(tmp_path: Path) -> None:
    with pytest.raises(buraq.Reject, match="could not start: FileNotFoundError: No such file or directory"):
        call(task({}, command=[str(tmp_path / "no-such-program")]))
    with pytest.raises(buraq.Reject, match=f"could not start: .*{tmp_path / 'gone'}"):
        call(task({}, command=["true"], cwd=str(tmp_path / "gone")))


@pytest.mark.parametrize(("options", "message"), [
    ({}, "bad options: options: 'command' is a required property"),
    ({"command": "rm -rf /"}, "bad options: command: 'rm -rf /' is not of type 'array'"),
    ({"command": []}, "bad options: command: [] should be non-empty"),
    ({"command": ["true"], "stdin": "yaml"}, "bad options: stdin: 'yaml' is not one of ['json', 'none']"),
    ({"command": ["true"], "timeout": "soon"}, "bad options: timeout: must be a duration above 0"),
    ({"command": ["true"], "env": {"PORT": 8080}}, "bad options: env.PORT: environment values must be strings"),
    ({"command": ["true"], "retry_exit_codes": [0]}, "retry_exit_codes.0: 0 is less than the minimum of 1"),
    ({"command": ["true"], "retry_exit_codes": [3, 4], "reject_exit_codes": [4]},
     "bad options: reject_exit_codes: [4] also in retry_exit_codes"),
    ({"command": ["true"], "shell": True}, "Additional properties are not allowed ('shell' was unexpected)"),
])
def test_bad_options_reject_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(buraq.Reject, match="^shell.run: ") as caught:
        call(task({}, **options))
    assert message in str(caught.value)
    assert "8080" not in str(caught.value)


def test_options_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(buraq_shell.OPTIONS_SCHEMA)
    assert buraq_shell.OPTIONS_SCHEMA["required"] == ["command"]


def test_registered_as_shell_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BURAQ_PLUGINS", raising=False)
    handler = load_plugins(plugins_dir=None).handler("shell.run")
    assert handler.function is buraq_shell.run
    assert handler.is_async
    assert "buraq-shell" in handler.plugin
    assert json.loads(json.dumps(buraq_shell.OPTIONS_SCHEMA)) == buraq_shell.OPTIONS_SCHEMA
