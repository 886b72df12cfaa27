"""Entries no handler can be given go to the DLQ with a reason on first delivery; the worker keeps going."""

from __future__ import annotations

import json

from conftest import Project


def test_undecodable_entries_are_dead_lettered_with_a_reason_and_good_tasks_still_run(recorder: Project, redis) -> None:
    # Given a stream holding bad entries written by a raw client, then a good one
    name = recorder.pipeline("inbox", "handler: test.ok\nmax_payload: 1000\n")
    stream = f"buraq:{{{name}}}:tasks"
    bad = {
        "decode": {"payload": "this is not json"},
        "invalid utf-8": {"payload": b'{"x": "\xff\xfe"}'},
        "NaN": {"payload": '{"x": NaN}'},
        "too_large": {"payload": json.dumps({"blob": "x" * 2000})},
        "missing_payload": {"body": "{}"},
        "bad_attempt": {"payload": "{}", "attempt": "zero"},
    }
    bad_ids = {label: redis.xadd(stream, fields).decode() for label, fields in bad.items()}
    good_id = redis.xadd(stream, {"payload": json.dumps({"ok": True})}).decode()

    # When the pipeline runs
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr

    # Then the good task ran once, and every bad entry is in the DLQ exactly once, with why
    assert [line.split()[0] for line in recorder.recorded("ok")] == [good_id]
    dlq = {fields[b"id"].decode(): fields for _, fields in redis.xrange(f"buraq:{{{name}}}:dlq")}
    assert set(dlq) == set(bad_ids.values())
    reasons = {label: dlq[entry_id][b"reason"].decode() for label, entry_id in bad_ids.items()}
    assert reasons == {"decode": "decode", "invalid utf-8": "decode", "NaN": "decode", "too_large": "too_large",
                       "missing_payload": "missing_payload", "bad_attempt": "bad_attempt"}
    assert b"not valid JSON" in dlq[bad_ids["NaN"]][b"error"]
    assert dlq[bad_ids["invalid utf-8"]][b"payload"] == b'{"x": "\xff\xfe"}'  # kept byte for byte
    assert dlq[bad_ids["decode"]][b"attempts"] == b"1"
    assert redis.xpending(stream, "buraq")["pending"] == 0


def test_payload_of_the_wrong_shape_is_refused_by_producers_and_dead_lettered_by_workers(recorder: Project, redis) -> None:
    # Given a pipeline that declares the shape of its payloads
    name = recorder.pipeline("shaped", """
        handler: test.ok
        payload_schema:
          type: object
          required: [user]
          properties: {user: {type: integer}}
    """)
    # Then producers refuse a payload of the wrong shape before it reaches Redis
    refused = recorder.buraq("enqueue", name, '{"user": "ada"}')
    assert refused.returncode == 1
    assert "payload does not match payload_schema at user" in refused.stderr
    # And one written by a raw client goes to the DLQ on first delivery, without a run
    stream = f"buraq:{{{name}}}:tasks"
    wrong = redis.xadd(stream, {"payload": '["user", 1]'}).decode()
    right = recorder.buraq("enqueue", name, '{"user": 1}').stdout.strip()
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in recorder.recorded("ok")] == [right]
    [(_, entry)] = redis.xrange(f"buraq:{{{name}}}:dlq")
    assert entry[b"id"].decode() == wrong
    assert entry[b"reason"] == b"schema"
    assert entry[b"attempts"] == b"1"
    assert b"is not of type 'object'" in entry[b"error"]


def test_a_malformed_member_in_the_delayed_set_is_dead_lettered_and_blocks_nothing(recorder: Project, redis) -> None:
    # Given a producer in another language that wrote a delayed task wrongly (a length in characters,
    # not bytes), due before a good one
    name = recorder.pipeline("parked", "handler: test.ok\n")
    delayed = f"buraq:{{{name}}}:delayed"
    redis.zadd(delayed, {"2:id5:bad-17:payload8:\"Zürich\"": 1})
    redis.zadd(delayed, {b"2:id4:good7:payload2:{}": 2})
    # When a worker promotes due tasks
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off")
    # Then the good one ran, and the bad one is in the DLQ whole, with the reason
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in recorder.recorded("ok")] == ["good"]
    [(_, entry)] = redis.xrange(f"buraq:{{{name}}}:dlq")
    assert entry[b"reason"] == b"bad_delayed_member"
    assert entry[b"payload"] == "2:id5:bad-17:payload8:\"Zürich\"".encode()
    assert redis.zcard(delayed) == 0
