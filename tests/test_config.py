"""Pure functions behind pipeline files: durations, Redis keys, retry delays, YAML loading, defaults."""

from __future__ import annotations

import binascii
import math
import random
import textwrap
from pathlib import Path

import pytest

from buraq import keys
from buraq.backoff import retry_delay
from buraq.config import DEFAULT_MAX_PAYLOAD, Backoff, RetryPolicy, find_pipeline, load_pipelines
from buraq.durations import DURATION_REGEX, parse_duration
from buraq.errors import ConfigError, ConfigProblem, UnknownPipeline
from buraq.yamlfile import interpolate, load_documents


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- durations -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("1d", 86400.0),
    ("2.5", 2.5), ("0", 0.0), ("0s", 0.0), (" 10 s ", 10.0), ("1.5m", 90.0),
    (0, 0.0), (2.5, 2.5), (10, 10.0),
])
def test_parse_duration(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize("value", [
    "", "   ", "ten", "10 parsecs", "s", "1.5.2s", "5 m s", "10sec", "1e3", ".5s", "5.s",
    "-5s", "-1", -1, -0.5, True, False, None, [], {}, "1w",
])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parse_duration_error_names_the_value() -> None:
    with pytest.raises(ValueError, match="10 parsecs"):
        parse_duration("10 parsecs")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(-3)


@pytest.mark.parametrize("text", ["30s", "5m", "250ms", "2.5", "0", " 1 h ", "ten", "-5s", "1.5.2s", "10 parsecs", ""])
def test_schema_duration_regex_agrees_with_parse_duration(text: str) -> None:
    """The schema's pattern and parse_duration must accept exactly the same strings."""
    import re

    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    assert bool(re.search(DURATION_REGEX, text)) == parsed


def test_parse_duration_rejects_nan() -> None:
    with pytest.raises(ValueError):
        parse_duration(float("nan"))


# --- keys ------------------------------------------------------------------------------------

def redis_cluster_slot(key: str) -> int:
    """The slot Redis Cluster puts ``key`` in, written from the cluster spec (not from buraq.keys):
    hash the part between the first '{' and the first '}' after it when that part is non-empty,
    else the whole key; CRC16-XMODEM modulo 16384."""
    data = key.encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % 16384


def test_reference_slot_function_matches_known_redis_values() -> None:
    # Values from Redis Cluster documentation / CLUSTER KEYSLOT.
    assert redis_cluster_slot("foo") == 12182
    assert redis_cluster_slot("{user1000}.following") == redis_cluster_slot("{user1000}.followers")
    assert redis_cluster_slot("foo{}{bar}") == binascii.crc_hqx(b"foo{}{bar}", 0) % 16384


@pytest.mark.parametrize(("key", "tag"), [
    ("buraq:{orders}:tasks", "orders"),
    ("plain", "plain"),
    ("a{b}c{d}", "b"),
    ("a{}b", "a{}b"),
    ("{}{x}", "{}{x}"),
    ("x{open", "x{open"),
    ("{only}", "only"),
    ("{{nested}}", "{nested"),
])
def test_hash_tag(key: str, tag: str) -> None:
    assert keys.hash_tag(key) == tag


def test_default_names() -> None:
    assert keys.default_stream("orders") == "buraq:{orders}:tasks"
    assert keys.default_dlq("buraq:{orders}:tasks") == "buraq:{orders}:dlq"
    assert keys.delayed_key("buraq:{orders}:tasks") == "buraq:{orders}:delayed"
    assert keys.sibling("app:{x}:jobs", "extra") == "app:{x}:extra"
    # A stream without a hash tag gets one around its whole name.
    assert keys.sibling("jobs", "dlq") == "{jobs}:dlq"


SLOT_STREAMS = ["buraq:{orders}:tasks", "jobs", "app:{x}:jobs", "a{b}c{d}", "{only}", "x{open", "{{nested}}"]


@pytest.mark.parametrize("stream", SLOT_STREAMS)
def test_siblings_share_the_stream_slot(stream: str) -> None:
    for derived in (keys.default_dlq(stream), keys.delayed_key(stream), keys.sibling(stream, "other")):
        assert derived != stream
        assert keys.same_slot(stream, derived)
        assert redis_cluster_slot(derived) == redis_cluster_slot(stream), (stream, derived)


@pytest.mark.parametrize("stream", ["jobs}", "a}b", "a{}b", "{}{x}"])
def test_a_stream_with_a_closing_brace_but_no_hash_tag_has_no_siblings(stream: str) -> None:
    # No key can share such a stream's slot, so deriving one is refused rather than done wrong.
    with pytest.raises(ValueError, match="hash tag"):
        keys.default_dlq(stream)
    with pytest.raises(ValueError, match="hash tag"):
        keys.delayed_key(stream)


def test_same_slot() -> None:
    assert keys.same_slot("buraq:{a}:tasks", "other:{a}:dlq")
    assert not keys.same_slot("buraq:{a}:tasks", "buraq:{b}:tasks")
    assert not keys.same_slot("jobs", "jobs:dlq")
    assert keys.same_slot("jobs", "{jobs}:dlq")


# --- retry delays ----------------------------------------------------------------------------

def test_retry_delay_is_exponential_and_capped() -> None:
    policy = Backoff(initial=1.0, multiplier=2.0, max=300.0, jitter=0.0)
    delays = [retry_delay(policy, attempt) for attempt in range(1, 12)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0]
    assert retry_delay(policy, 0) == 1.0  # never below the first delay
    assert retry_delay(policy, 100_000) == 300.0  # no overflow, just the cap
    assert retry_delay(Backoff(initial=0.5, multiplier=3.0, max=10.0, jitter=0.0), 3) == 4.5


def test_retry_delay_with_multiplier_one_is_constant() -> None:
    policy = Backoff(initial=5.0, multiplier=1.0, max=300.0, jitter=0.0)
    assert {retry_delay(policy, attempt) for attempt in range(1, 20)} == {5.0}


@pytest.mark.parametrize("jitter", [0.1, 0.5, 1.0])
def test_jitter_only_shortens_and_stays_within_its_fraction(jitter: float) -> None:
    policy = Backoff(initial=1.0, multiplier=2.0, max=60.0, jitter=jitter)
    exact = Backoff(initial=1.0, multiplier=2.0, max=60.0, jitter=0.0)
    seen = set()
    for seed in range(200):
        rand = random.Random(seed)
        for attempt in range(1, 10):
            base = retry_delay(exact, attempt)
            delay = retry_delay(policy, attempt, rand)
            assert base * (1 - jitter) <= delay <= base, (seed, attempt, delay)
            seen.add(delay)
    assert len(seen) > 100  # the jitter does spread delays out
    assert max(retry_delay(policy, 50, random.Random(s)) for s in range(200)) <= 60.0


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    policy = Backoff(initial=2.0, multiplier=2.0, max=100.0, jitter=0.3)
    first = [retry_delay(policy, a, random.Random(7)) for a in range(1, 8)]
    second = [retry_delay(policy, a, random.Random(7)) for a in range(1, 8)]
    assert first == second
    assert first != [retry_delay(policy, a, random.Random(8)) for a in range(1, 8)]


# --- YAML: interpolation and lines -----------------------------------------------------------

def test_interpolate() -> None:
    env = {"A": "alpha", "EMPTY": "", "B": "${A}"}
    assert interpolate("${A}", env, "f.yaml", 1) == "alpha"
    assert interpolate("x-${A}-${A}-y", env, "f.yaml", 1) == "x-alpha-alpha-y"
    assert interpolate("${MISSING:fallback}", env, "f.yaml", 1) == "fallback"
    assert interpolate("${MISSING:}", env, "f.yaml", 1) == ""
    assert interpolate("${MISSING:http://h:1/p}", env, "f.yaml", 1) == "http://h:1/p"
    assert interpolate("${EMPTY:default}", env, "f.yaml", 1) == ""  # set but empty is set
    assert interpolate("${A:default}", env, "f.yaml", 1) == "alpha"
    assert interpolate("$${A}", env, "f.yaml", 1) == "${A}"
    assert interpolate("cost: $${A} vs ${A}", env, "f.yaml", 1) == "cost: ${A} vs alpha"
    assert interpolate("${B}", env, "f.yaml", 1) == "${A}"  # values are not expanded again
    assert interpolate("$A and {A} and $ {A}", env, "f.yaml", 1) == "$A and {A} and $ {A}"


def test_interpolate_unset_without_default_names_variable_file_and_line() -> None:
    with pytest.raises(ConfigProblem) as info:
        interpolate("a ${NOPE} b", {}, "pipelines/x.yaml", 7)
    assert info.value.path == "pipelines/x.yaml"
    assert info.value.line == 7
    assert "NOPE" in info.value.message
    assert info.value.render().startswith("pipelines/x.yaml:7: ")


def test_load_documents_tracks_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", """
        # comment line 1

        name: lines
        retry:
          attempts: 4
          backoff:
            initial: 1s
        options:
          list:
            - first
            - second: 2
              third: 3
        ---
        # second document
        - name: in-list
        - name: also
          pool: 3
    """)
    first, second = load_documents(str(path), {})
    assert first.value["retry"]["backoff"]["initial"] == "1s"
    assert first.lines[()] == 3
    assert first.lines[("name",)] == 3
    assert first.lines[("retry",)] == 4
    assert first.lines[("retry", "attempts")] == 5
    assert first.lines[("retry", "backoff", "initial")] == 7
    assert first.lines[("options", "list", 0)] == 10
    assert first.lines[("options", "list", 1)] == 11
    assert first.lines[("options", "list", 1, "third")] == 12
    # line_of falls back to the nearest ancestor
    assert first.line_of(("retry", "backoff", "nonexistent")) == 6
    assert first.line_of(()) == 3
    # lines of a later document count from the top of the file
    assert second.value == [{"name": "in-list"}, {"name": "also", "pool": 3}]
    assert second.lines[(0,)] == 15
    assert second.lines[(1,)] == 16
    assert second.lines[(1, "pool")] == 17


def test_load_documents_interpolates_and_retypes_plain_scalars(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", """
        pool: ${POOL:4}
        quoted: "${POOL:4}"
        flag: ${FLAG:true}
        empty: ${NOTHING:}
        text: ${GREETING:hello world}
        escaped: $${HOME}
        mixed: "${A:x}/$${B}"
        # ${IN_A_COMMENT} is never looked at
    """)
    [document] = load_documents(str(path), {})
    assert document.value == {
        "pool": 4, "quoted": "4", "flag": True, "empty": None, "text": "hello world",
        "escaped": "${HOME}", "mixed": "x/${B}",
    }
    [from_env] = load_documents(str(path), {"POOL": "12", "FLAG": "no", "GREETING": "a: b"})
    assert from_env.value["pool"] == 12
    assert from_env.value["flag"] is False
    assert from_env.value["text"] == "a: b"  # a value cannot change the file's structure


def test_load_documents_unset_variable_reports_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "name: x\noptions:\n  a: 1\n  b: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigProblem) as info:
        load_documents(str(path), {})
    assert (info.value.path, info.value.line) == (str(path), 4)
    assert "NOT_SET_ANYWHERE" in info.value.message


def test_load_documents_rejects_duplicate_keys_with_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "a: 1\nnested:\n  x: 1\n  y: 2\n  x: 3\n")
    with pytest.raises(ConfigProblem) as info:
        load_documents(str(path), {})
    assert info.value.line == 5
    assert "'x'" in info.value.message and "line 3" in info.value.message


def test_load_documents_non_utf8_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigProblem, match="UTF-8"):
        load_documents(str(bad), {})
    with pytest.raises(ConfigProblem, match="cannot read"):
        load_documents(str(tmp_path / "missing.yaml"), {})


def test_explicit_tag_survives_interpolation(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "version: !!str ${VERSION:1.10}\n")
    [document] = load_documents(str(path), {})
    assert document.value["version"] == "1.10"


def test_escape_behind_an_alias_is_interpolated_once(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", 'a: &shared "$${HOME}"\nb: *shared\n')
    [document] = load_documents(str(path), {"HOME": "/root"})
    assert document.value == {"a": "${HOME}", "b": "${HOME}"}


def test_nested_aliases_do_not_blow_up_line_tracking(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 5)]
    path = write(tmp_path, "aliases.yaml", "\n".join(lines) + "\n")
    [document] = load_documents(str(path), {})
    assert len(document.value["a4"]) == 10
    assert len(document.lines) < 1000


# --- load_pipelines --------------------------------------------------------------------------

def test_load_pipelines_fills_in_defaults(tmp_path: Path) -> None:
    write(tmp_path, "orders.yaml", "name: orders\nhandler: builtin.noop\n")
    [pipeline] = load_pipelines([tmp_path], environ={})
    assert pipeline.name == "orders"
    assert pipeline.handler == "builtin.noop"
    assert pipeline.stream == "buraq:{orders}:tasks"
    assert pipeline.dlq == "buraq:{orders}:dlq"
    assert pipeline.delayed == "buraq:{orders}:delayed"
    assert pipeline.group == keys.GROUP
    assert pipeline.pool == 10
    assert pipeline.codec == "json"
    assert pipeline.timeout is None
    assert pipeline.max_payload == DEFAULT_MAX_PAYLOAD == 1024 * 1024
    assert pipeline.retry == RetryPolicy(attempts=3, backoff=Backoff(1.0, 2.0, 300.0, 0.1))
    assert pipeline.retry.attempts == 3
    assert dict(pipeline.options) == {}
    assert pipeline.description == ""
    assert pipeline.source == f"{tmp_path / 'orders.yaml'}:1"


def test_load_pipelines_reads_every_setting(tmp_path: Path) -> None:
    write(tmp_path, "full.yaml", """
        # leading comment
        name: full
        description: all of it
        handler: builtin.log
        stream: "app:{full}:in"
        dlq: "app:{full}:dead"
        codec: json
        pool: ${POOL:7}
        timeout: 1m
        max_payload: 100
        retry:
          attempts: 9
          backoff: {initial: 250ms, multiplier: 3, max: 1h, jitter: 0}
        options: {path: "${DIR:/var}/x", n: 1}
    """)
    [pipeline] = load_pipelines([tmp_path / "full.yaml"], environ={"DIR": "/data"})
    assert (pipeline.stream, pipeline.dlq, pipeline.delayed) == ("app:{full}:in", "app:{full}:dead", "app:{full}:delayed")
    assert pipeline.pool == 7
    assert pipeline.timeout == 60.0
    assert pipeline.max_payload == 100
    assert pipeline.retry == RetryPolicy(attempts=9, backoff=Backoff(0.25, 3.0, 3600.0, 0.0))
    assert dict(pipeline.options) == {"path": "/data/x", "n": 1}
    assert pipeline.description == "all of it"
    assert pipeline.source.endswith("full.yaml:2")


def test_load_pipelines_list_file_and_lookup(tmp_path: Path) -> None:
    write(tmp_path, "many.yml", """
        - name: one
          handler: builtin.noop
        - name: two
          handler: builtin.noop
          stream: plain-stream
    """)
    one, two = load_pipelines([tmp_path], environ={})
    assert one.source.endswith("many.yml:1") and two.source.endswith("many.yml:3")
    assert two.dlq == "{plain-stream}:dlq"
    assert find_pipeline([one, two], "two") is two
    with pytest.raises(UnknownPipeline, match="one, two"):
        find_pipeline([one, two], "three")


def test_load_pipelines_checks_handlers_and_collects_all_problems(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: a\nhandler: known\n")
    write(tmp_path, "b.yaml", "name: b\nhandler: unknown\n")
    write(tmp_path, "c.yaml", "name: c\nhandler: known\npool: 0\n")
    assert [p.name for p in load_pipelines([tmp_path / "a.yaml"], handlers={"known"}, environ={})] == ["a"]
    with pytest.raises(ConfigError) as info:
        load_pipelines([tmp_path], handlers={"known"}, environ={})
    located = sorted((Path(p.path).name, p.line) for p in info.value.problems)
    assert located == [("b.yaml", 2), ("c.yaml", 3)]
    # without a handler set, handler names are not checked
    assert len(load_pipelines([tmp_path / "a.yaml", tmp_path / "b.yaml"], environ={})) == 2


def test_empty_file_has_no_pipelines(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    assert load_pipelines([tmp_path], environ={}) == []


def test_backoff_defaults_match_the_schema() -> None:
    from buraq.config import pipeline_schema

    backoff = pipeline_schema()["properties"]["retry"]["properties"]["backoff"]["properties"]
    defaults = Backoff()
    assert parse_duration(backoff["initial"]["default"]) == defaults.initial
    assert parse_duration(backoff["max"]["default"]) == defaults.max
    assert backoff["multiplier"]["default"] == defaults.multiplier
    assert backoff["jitter"]["default"] == defaults.jitter
    assert pipeline_schema()["properties"]["retry"]["properties"]["attempts"]["default"] == RetryPolicy().attempts
    assert math.isclose(pipeline_schema()["properties"]["max_payload"]["default"], DEFAULT_MAX_PAYLOAD)
