"""`buraq test`: cases next to the pipelines, run through the real engine against real handlers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import redis as redis_sync

from conftest import ROOT, Project

HANDLERS = '''
import asyncio
import buraq

def double(task):
    return {"doubled": task.payload["n"] * 2, "pipeline": task.pipeline, "scale": task.options.get("scale")}

async def flaky(task):
    if task.attempt < 3:
        raise ConnectionError(f"attempt {task.attempt} failed")
    return {"attempt": task.attempt}

async def hang(task):
    await asyncio.sleep(3600)

@buraq.hookimpl
def register_handlers(register):
    register("t.double", double)
    register("t.flaky", flaky)
    register("t.hang", hang)
'''


def cases(project: Project, filename: str, body: str) -> None:
    folder = project.pipelines / "tests"
    folder.mkdir(exist_ok=True)
    (folder / filename).write_text(textwrap.dedent(body))


def buraq_test(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return project.buraq("test", "pipelines", *args, timeout=120)


def test_passing_cases_exit_0_with_one_line_each(project: Project) -> None:
    # Given a handler, its pipeline (with retries that would normally wait 10s) and cases for it
    project.plugin("handlers.py", HANDLERS)
    double = project.pipeline("double", "handler: t.double\nexecutor: process\noptions: {scale: 1}\n")
    flaky = project.pipeline("flaky", "handler: t.flaky\nretry: {attempts: 3, backoff: {initial: 10s}}\n")
    cases(project, "double.yaml", f"""\
        pipeline: {double}
        cases:
          - name: doubles
            input: {{n: 21}}
            output: {{doubled: 42, pipeline: {double}, scale: 1}}
            attempts: 1
          - name: options of the case override the pipeline's
            options: {{scale: 7}}
            inputs: [{{n: 1}}, {{n: 1}}]
            output: {{doubled: 2, pipeline: {double}, scale: 7}}
          - name: a payload the handler cannot use is dead-lettered after every attempt
            input: "not a mapping"
            outcome: dead
            reason: handler_error
            error_type: TypeError
            attempts: 3
    """)
    cases(project, "flaky.yml", f"""\
        pipeline: {flaky}
        cases:
          - name: succeeds on the third attempt
            input: {{}}
            output: {{attempt: 3}}
            attempts: 3
    """)
    # When the cases run
    result = buraq_test(project)
    # Then each passes, retries did not wait their backoff, and the summary counts them
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"pipelines/tests/double.yaml:3: {double}: doubles PASS",
        f"pipelines/tests/double.yaml:7: {double}: options of the case override the pipeline's PASS",
        f"pipelines/tests/double.yaml:11: {double}: a payload the handler cannot use is dead-lettered after every attempt PASS",
        f"pipelines/tests/flaky.yml:3: {flaky}: succeeds on the third attempt PASS",
    ]
    assert lines[4].startswith("== 4 passed in ")
    seconds = float(lines[4].split(" in ")[1].rstrip("s ="))
    assert seconds < 10, "the 10s backoff was not skipped"


def test_failures_exit_1_with_a_diff(project: Project) -> None:
    project.plugin("handlers.py", HANDLERS)
    double = project.pipeline("double", "handler: t.double\nretry: {attempts: 2}\n")
    cases(project, "double.yaml", f"""\
        pipeline: {double}
        cases:
          - name: wrong output
            input: {{n: 2}}
            output: {{doubled: 5, pipeline: {double}, scale: null}}
          - name: expects dead but it succeeds
            input: {{n: 1}}
            outcome: dead
            reason: rejected
          - name: expects done but it dies
            input: {{}}
            attempts: 1
          - name: right
            input: {{n: 0}}
            output: {{doubled: 0, pipeline: {double}, scale: null}}
    """)
    result = buraq_test(project)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"pipelines/tests/double.yaml:3: {double}: wrong output FAIL" in out
    assert '-  "doubled": 5,' in out and '+  "doubled": 4,' in out
    assert "outcome: expected dead, got done" in out and "reason: expected 'rejected', got None" in out
    assert "outcome: expected done, got dead (handler_error, KeyError: 'n')" in out
    assert "attempts: expected 1, got 2" in out
    assert f"{double}: right PASS" in out
    assert out.splitlines()[-1].startswith("== 3 failed, 1 passed in ")


def test_output_is_compared_as_json(project: Project) -> None:
    project.plugin("handlers.py", HANDLERS)
    double = project.pipeline("double", "handler: t.double\n")
    cases(project, "double.yaml", f"""\
        pipeline: {double}
        cases:
          - name: 2.0 equals 2
            input: {{n: 1.0}}
            output: {{doubled: 2, pipeline: {double}, scale: null}}
          - name: true is not 1
            input: {{n: 0.5}}
            output: {{doubled: true, pipeline: {double}, scale: null}}
    """)
    result = buraq_test(project)
    assert result.returncode == 1
    assert f"{double}: 2.0 equals 2 PASS" in result.stdout
    assert f"{double}: true is not 1 FAIL" in result.stdout


def test_a_case_that_never_ends_fails_at_the_timeout(project: Project) -> None:
    project.plugin("handlers.py", HANDLERS)
    hang = project.pipeline("hang", "handler: t.hang\n")
    cases(project, "hang.yaml", f"pipeline: {hang}\ncases:\n  - name: hangs\n    input: 1\n")
    result = buraq_test(project, "--timeout", "2s")
    assert result.returncode == 1
    assert f"{hang}: hangs FAIL" in result.stdout
    assert "outcome: expected done, got unfinished" in result.stdout


def test_an_external_redis_keeps_nothing_of_the_run(project: Project, redis: redis_sync.Redis) -> None:
    project.plugin("handlers.py", HANDLERS)
    double = project.pipeline("double", "handler: t.double\nretry: {attempts: 2}\n")
    cases(project, "double.yaml", f"""\
        pipeline: {double}
        cases:
          - {{name: ok, input: {{n: 1}}}}
          - {{name: dead, input: {{}}, outcome: dead}}
    """)
    # A real task waiting in the real pipeline's stream is neither run nor touched.
    real_stream = f"buraq:{{{double}}}:tasks"
    redis.xadd(real_stream, {"payload": '{"n": 100}'})
    result = buraq_test(project, "--redis-url", project.redis_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert redis.xlen(real_stream) == 1 and not redis.exists(f"buraq:{{{double}}}:dlq")
    assert not list(redis.scan_iter(match="buraq-test:*", count=1000))
    redis.delete(real_stream)


def test_invalid_test_files_exit_2_with_file_and_line(project: Project) -> None:
    name = project.pipeline("p", "handler: builtin.noop\n")
    cases(project, "a.yaml", f"""\
        pipeline: {name}
        cases:
          - name: both inputs
            input: 1
            inputs: [2]
          - name: output of a dead task
            input: 1
            outcome: dead
            output: 1
          - name: reason of a done task
            input: 1
            reason: rejected
    """)
    cases(project, "b.yaml", "pipeline: nobody\ncases: [{name: x, input: 1}]\n")
    cases(project, "c.yaml", "pipeline: x\ncases:\n  - name: x\n    input: ${UNSET_VARIABLE_XYZ}\n")
    cases(project, "d.yaml", "pipeline: x\ncases:\n  - name: typo\n    input: 1\n    outcom: dead\n")
    result = buraq_test(project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        "pipelines/tests/a.yaml:3: cases[0]: give exactly one of input or inputs",
        "pipelines/tests/a.yaml:9: cases[1].output needs outcome: done (a dead-lettered task has no output)",
        "pipelines/tests/a.yaml:12: cases[2].reason needs outcome: dead",
        f"pipelines/tests/b.yaml:1: no pipeline named 'nobody' (known: {name})",
        "pipelines/tests/c.yaml:4: environment variable UNSET_VARIABLE_XYZ is not set and has no default "
        "(write ${UNSET_VARIABLE_XYZ:default})",
        "pipelines/tests/d.yaml:5: unknown key cases.0.outcom (allowed: attempts, error_type, input, inputs, name, "
        "options, outcome, output, reason)",
    ]
    assert result.stdout == ""


def test_no_cases_exit_5_and_validate_ignores_the_tests_folder(project: Project) -> None:
    project.pipeline("p", "handler: builtin.noop\n")
    assert buraq_test(project).returncode == 5
    cases(project, "p.yaml", "pipeline: p\ncases: []\n")  # not a pipeline, and loaded by test only
    validated = project.buraq("validate", "pipelines")
    assert validated.returncode == 0, validated.stderr
    assert "ok: 1 pipeline(s)" in validated.stderr
    result = buraq_test(project)
    assert result.returncode == 2
    assert "pipelines/tests/p.yaml:2: cases: [] should be non-empty" in result.stderr


def test_the_example_pipelines_pass_their_cases(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run([sys.executable, "-m", "buraq", "test", str(ROOT / "pipelines")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = sum(text.count("  - name:") for text in (p.read_text() for p in (ROOT / "pipelines" / "tests").glob("*.yaml")))
    assert cases >= 8 and result.stdout.count(" PASS\n") == cases
    assert not (tmp_path / "var").exists()  # the events and store cases wrote into the run's scratch folder


def test_a_payload_breaking_payload_schema_is_dead_lettered_unrun(project: Project) -> None:
    # The producer's checks are skipped on purpose, so the worker's own check can be tested.
    project.plugin("handlers.py", HANDLERS)
    double = project.pipeline("double", """\
        handler: t.double
        payload_schema: {type: object, required: [n], properties: {n: {type: number}}}
    """)
    cases(project, "double.yaml", f"""\
        pipeline: {double}
        cases:
          - name: a string n never reaches the handler
            input: {{n: "two"}}
            outcome: dead
            reason: schema
            error_type: Undecodable
            attempts: 1
          - name: a number n does
            input: {{n: 2}}
            output: {{doubled: 4, pipeline: {double}, scale: null}}
    """)
    result = buraq_test(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "== 2 passed in " in result.stdout


def test_more_option_sets_than_one_serve_batch_all_run(project: Project) -> None:
    # Each distinct `options` is its own copy of the pipeline; one process serving dozens at once would
    # run out of pooled Redis connections, so they are served in batches (runner.BATCH).
    project.plugin("handlers.py", HANDLERS)
    double = project.pipeline("double", "handler: t.double\n")
    body = "".join(f"  - {{name: scale {n}, options: {{scale: {n}}}, input: {{n: {n}}}, "
                   f"output: {{doubled: {2 * n}, pipeline: {double}, scale: {n}}}}}\n" for n in range(40))
    cases(project, "double.yaml", f"pipeline: {double}\ncases:\n{body}")
    result = buraq_test(project, "--timeout", "100s")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "== 40 passed in " in result.stdout


def test_a_case_checks_what_a_stage_returns_and_never_forwards_it(project: Project) -> None:
    # Given a chained pipeline (double -> sink) and a case for double, run against the machine's Redis
    project.plugin("handlers.py", HANDLERS)
    sink = project.pipeline("sink", "handler: builtin.noop\n")
    double = project.pipeline("double", f"handler: t.double\noutput: {sink}\n")
    cases(project, "double.yaml", f"""\
        pipeline: {double}
        cases:
          - name: doubles
            input: {{n: 2}}
            output: {{doubled: 4, pipeline: {double}, scale: null}}
    """)
    result = buraq_test(project, "--redis-url", project.redis_url)

    # Then the case passes on the returned value, and nothing reached the real sink's stream
    assert result.returncode == 0, result.stdout + result.stderr
    assert redis_sync.Redis.from_url(project.redis_url).exists(f"buraq:{{{sink}}}:tasks") == 0
