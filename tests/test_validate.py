"""`buraq validate` as a user runs it: a real subprocess over real files.

Each run happens in its own temporary folder with ``pipelines/`` and a
``--plugins-dir``. ``BURAQ_PLUGINS`` is set to the empty string so that only
the built-ins and the local plugins folder are loaded, whatever else happens to
be installed; plugin discovery itself is covered in test_plugins.py.
Nothing here needs Redis.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Names of variables the pipeline files refer to and that must stay unset.
UNSET = ("UNSET_VAR_FOR_TEST", "UNSET_POOL", "UNSET_DIR", "UNSET_CMD", "AMOUNT")
PROBLEM_LINE = re.compile(r"^(?P<file>[^:\s]+\.ya?ml):(?P<line>\d+): (?P<message>.+)$")

LOCAL_PLUGIN = '''
import buraq

def echo(task):
    return task.payload

@buraq.hookimpl
def register_handlers(register):
    register("local.echo", echo)
'''


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BURAQ_") and k not in UNSET}
    env["BURAQ_PLUGINS"] = ""  # built-ins and --plugins-dir only
    return env


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def validate(cwd: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    (cwd / "plugins").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "buraq", "validate", *paths, "--plugins-dir", str(cwd / "plugins")],
        cwd=cwd, env=environment(), capture_output=True, text=True, timeout=60,
    )


def problem_lines(result: subprocess.CompletedProcess[str]) -> list[re.Match[str]]:
    """Every stderr line, each required to have the FILE:LINE: message shape."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    matches = []
    for line in lines:
        match = PROBLEM_LINE.match(line)
        assert match, f"not a FILE:LINE: message line: {line!r}\nfull stderr:\n{result.stderr}"
        matches.append(match)
    return matches


def test_valid_set_exits_zero(tmp_path: Path) -> None:
    write(tmp_path, "plugins/local_echo.py", LOCAL_PLUGIN)
    write(tmp_path, "pipelines/full.yaml", """
        # every key, with the forms people write
        name: full
        description: "costs $${AMOUNT} per task"   # escaped: AMOUNT is not set and need not be
        handler: builtin.noop
        stream: "app:{full}:tasks"
        dlq: "app:{full}:dead"
        codec: json
        pool: ${UNSET_POOL:4}
        timeout: 250ms
        max_payload: 2048
        retry:
          attempts: 5
          backoff: {initial: 1s, multiplier: 3, max: 1m, jitter: 0.5}
        options:
          path: ${UNSET_DIR:/tmp/buraq}/out.jsonl
    """)
    write(tmp_path, "pipelines/two.yaml", """
        - name: first-of-two
          handler: builtin.log
        - name: second-of-two
          handler: local.echo
          timeout: 2.5
    """)
    write(tmp_path, "pipelines/nested/deeper/deep.yml", """
        name: deep
        handler: builtin.sleep
        timeout: 1h
    """)
    # Not pipeline files: a hidden folder (even a broken file there) and other suffixes.
    write(tmp_path, "pipelines/.drafts/broken.yaml", "name: [unclosed\n")
    write(tmp_path, "pipelines/README.txt", "not: [yaml\n")

    result = validate(tmp_path, "pipelines")

    assert result.returncode == 0, result.stderr
    assert "ok: 4 pipeline(s)" in result.stderr


def test_quoted_interpolation_stays_a_string(tmp_path: Path) -> None:
    """`pool: ${UNSET_POOL:4}` is the integer 4 (accepted above); quoted, it is the string "4"."""
    write(tmp_path, "pipelines/quoted.yaml", """
        name: quoted
        handler: builtin.noop
        pool: "${UNSET_POOL:4}"
    """)
    result = validate(tmp_path, "pipelines")
    assert result.returncode == 1
    [problem] = problem_lines(result)
    assert problem.group("file", "line") == ("pipelines/quoted.yaml", "3")
    assert "'4' is not of type 'integer'" in problem.group("message")


# file -> (text, [(line, words expected in the message)])
BROKEN: dict[str, tuple[str, list[tuple[int, tuple[str, ...]]]]] = {
    "syntax.yaml": ("""
        name: syntax
        handler: builtin.noop
        description: this: is not allowed
    """, [(3, ("YAML", "mapping values"))]),
    "unknown_top.yaml": ("""
        name: unknown-top
        handler: builtin.noop
        concurency: 4
    """, [(3, ("unknown key", "concurency"))]),
    "unknown_nested.yaml": ("""
        name: unknown-nested
        handler: builtin.noop
        retry:
          attempts: 5
          backof:
            initial: 1s
    """, [(5, ("unknown key", "retry.backof", "backoff"))]),
    "pool_type.yaml": ("""
        name: pool-type
        handler: builtin.noop
        pool: "ten"
    """, [(3, ("pool", "integer"))]),
    "pool_zero.yaml": ("""
        name: pool-zero
        handler: builtin.noop
        description: nothing would ever run
        pool: 0
    """, [(4, ("pool", "minimum"))]),
    "bad_duration.yaml": ("""
        name: bad-duration
        handler: builtin.noop
        timeout: 10 parsecs
    """, [(3, ("timeout", "10 parsecs", "not a duration"))]),
    "attempts_zero.yaml": ("""
        name: attempts-zero
        handler: builtin.noop
        retry:
          attempts: 0
    """, [(4, ("attempts", "minimum"))]),
    "dup_key.yaml": ("""
        name: dup-key
        handler: builtin.noop
        pool: 2
        pool: 3
    """, [(4, ("duplicate key", "pool", "line 3"))]),
    "dup_name_1.yaml": ("""
        # the first definition starts on line 2
        name: twin
        handler: builtin.noop
    """, []),
    "dup_name_2.yaml": ("""
        name: twin
        handler: builtin.log
    """, [(1, ("duplicate pipeline name", "twin", "pipelines/dup_name_1.yaml:2"))]),
    "shared_stream_1.yaml": ("""
        stream: "jobs:{shared}"
        name: shared-one
        handler: builtin.noop
    """, []),
    "shared_stream_2.yaml": ("""
        stream: "jobs:{shared}"
        name: shared-two
        handler: builtin.noop
    """, [(1, ("'jobs:{shared}'", "as its stream", "shared-one", "pipelines/shared_stream_1.yaml:1"))]),
    "unknown_handler.yaml": ("""
        handler: nope.missing
        name: unknown-handler
    """, [(1, ("unknown handler", "nope.missing"))]),
    "unset_var.yaml": ("""
        name: unset-var
        handler: builtin.noop
        options:
          path: ${UNSET_VAR_FOR_TEST}/out
    """, [(4, ("UNSET_VAR_FOR_TEST", "not set"))]),
    "list_of_two.yaml": ("""
        # the first item is fine, the second is not

        - name: listed-ok
          handler: builtin.noop
        - name: listed-bad
          handler: builtin.noop
          pool: -1
    """, [(7, ("pool", "minimum"))]),
    "dlq_slot.yaml": ("""
        name: dlq-slot
        handler: builtin.noop
        stream: "buraq:{orders}:tasks"
        dlq: "buraq:{payments}:dlq"
    """, [(4, ("dlq", "buraq:{payments}:dlq", "hash tag"))]),
    "scalar.yaml": ("""
        just a string
    """, [(1, ("mapping",))]),
    "missing_handler.yaml": ("""
        name: missing-handler
        pool: 3
    """, [(1, ("handler", "required"))]),
    "quoted_pool.yaml": ("""
        name: quoted-pool
        handler: builtin.noop
        pool: "${UNSET_POOL:4}"
    """, [(3, ("pool", "integer"))]),
    "fine.yaml": ("""
        name: fine
        handler: builtin.noop
    """, []),
}


def test_broken_set_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    for filename, (text, _) in BROKEN.items():
        write(tmp_path, f"pipelines/{filename}", text)

    result = validate(tmp_path, "pipelines")

    assert result.returncode == 1, result.stderr
    assert "ok:" not in result.stderr
    problems = problem_lines(result)
    by_file: dict[str, list[re.Match[str]]] = {}
    for problem in problems:
        by_file.setdefault(problem.group("file"), []).append(problem)

    expected_files = {f"pipelines/{name}" for name, (_, wanted) in BROKEN.items() if wanted}
    assert set(by_file) == expected_files, result.stderr
    for filename, (_, wanted) in BROKEN.items():
        reported = by_file.get(f"pipelines/{filename}", [])
        for line, words in wanted:
            hits = [p for p in reported if int(p.group("line")) == line and all(w in p.group("message") for w in words)]
            assert hits, f"{filename}:{line} should mention {words}; got:\n{result.stderr}"
        assert len(reported) == len(wanted), result.stderr


@pytest.mark.parametrize("second, line", [
    ("name: twin\nhandler: builtin.log\n", "1"),
    ("name: other\nhandler: builtin.log\nstream: buraq:{twin}:tasks\n", "3"),
])
def test_one_mistake_is_one_line(tmp_path: Path, second: str, line: str) -> None:
    # A duplicate name is reported at its name: line, a shared stream at its stream: line; once each.
    write(tmp_path, "pipelines/a.yaml", "name: twin\nhandler: builtin.noop\n")
    write(tmp_path, "pipelines/b.yaml", second)
    result = validate(tmp_path, "pipelines")
    assert result.returncode == 1
    problems = problem_lines(result)
    assert [p.group("file", "line") for p in problems] == [("pipelines/b.yaml", line)], result.stderr


@pytest.mark.parametrize("tag_line", [
    'run: !!python/object/apply:os.system ["touch MARKER"]',
    'run: !!python/object/new:os.system ["touch MARKER"]',
    'run: !!python/object/apply:subprocess.check_call [["touch", "MARKER"]]',
])
def test_python_tags_are_reported_and_never_run(tmp_path: Path, tag_line: str) -> None:
    write(tmp_path, "pipelines/evil.yaml", f"""
        name: evil
        handler: builtin.noop
        options:
          {tag_line}
    """)

    result = validate(tmp_path, "pipelines")

    assert not (tmp_path / "MARKER").exists(), "a !!python tag was executed"
    assert not (tmp_path / "pipelines" / "MARKER").exists(), "a !!python tag was executed"
    assert result.returncode == 1
    [problem] = problem_lines(result)
    assert problem.group("file", "line") == ("pipelines/evil.yaml", "4")
    assert "python/object" in problem.group("message")


def test_python_tag_as_the_whole_document(tmp_path: Path) -> None:
    write(tmp_path, "pipelines/whole.yaml", """
        # nothing but the payload
        !!python/object/apply:os.system ["touch MARKER"]
    """)
    result = validate(tmp_path, "pipelines")
    assert not (tmp_path / "MARKER").exists()
    assert result.returncode == 1
    [problem] = problem_lines(result)
    assert problem.group("file", "line") == ("pipelines/whole.yaml", "2")


def test_python_tag_payload_is_live(tmp_path: Path) -> None:
    """Control for the tests above: the same text does run a command under PyYAML's unsafe loader,
    so the absence of MARKER there means buraq refused it, not that the payload was inert."""
    code = 'import yaml; yaml.unsafe_load(\'run: !!python/object/new:os.system ["touch MARKER"]\')'
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "MARKER").exists()


def test_python_tag_on_interpolated_scalar_is_still_reported(tmp_path: Path) -> None:
    write(tmp_path, "pipelines/sneaky.yaml", """
        name: sneaky
        handler: builtin.noop
        options:
          run: !!python/object/apply:os.system ${UNSET_CMD:touch MARKER}
    """)
    result = validate(tmp_path, "pipelines")
    assert not (tmp_path / "MARKER").exists()
    assert result.returncode == 1, result.stderr
    [problem] = problem_lines(result)
    assert problem.group("file", "line") == ("pipelines/sneaky.yaml", "4")


def test_nan_durations_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "pipelines/nan.yaml", """
        name: not-a-number
        handler: builtin.noop
        timeout: .nan
        retry:
          backoff:
            multiplier: .nan
    """)
    result = validate(tmp_path, "pipelines")
    assert result.returncode == 1, result.stderr
    lines = {(p.group("file"), p.group("line")) for p in problem_lines(result)}
    assert lines == {("pipelines/nan.yaml", "3"), ("pipelines/nan.yaml", "6")}


def test_cross_check_problems_point_at_the_offending_key(tmp_path: Path) -> None:
    write(tmp_path, "pipelines/late_handler.yaml", """
        name: late-handler
        description: the handler is on line 3
        handler: nope.missing
    """)
    result = validate(tmp_path, "pipelines")
    assert result.returncode == 1
    [problem] = problem_lines(result)
    assert "unknown handler" in problem.group("message")
    assert problem.group("file", "line") == ("pipelines/late_handler.yaml", "3")


def test_files_named_one_by_one_and_a_missing_path(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: by-name\nhandler: builtin.noop\n")
    ok = validate(tmp_path, "a.yaml")
    assert ok.returncode == 0, ok.stderr
    assert "ok: 1 pipeline(s)" in ok.stderr

    missing = validate(tmp_path, "a.yaml", "nowhere")
    assert missing.returncode == 1
    assert "nowhere" in missing.stderr and "no such file" in missing.stderr
