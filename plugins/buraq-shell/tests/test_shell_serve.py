"""End to end: the installed buraq-shell plugin under a real `buraq serve --burst`, real Redis, real commands."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import redis as redis_sync

import buraq
from shell_fixtures import buraq as run_buraq, gone, unique
from shell_fixtures import redis, redis_url  # noqa: F401  (fixtures)


def test_serve_acks_retries_rejects_and_kills_timeouts(tmp_path: Path, redis_url: str,
                                                      redis: redis_sync.Redis) -> None:
    # Given four shell.run pipelines whose commands log each run to a file of their own
    (tmp_path / "pipelines").mkdir()
    logs = {kind: tmp_path / f"{kind}.log" for kind in ("ok", "flaky", "reject", "slow")}
    scripts = {
        "ok": 'echo "$BURAQ_ATTEMPT $(cat)" >> "$LOG"',
        "flaky": 'echo "$BURAQ_ATTEMPT" >> "$LOG"; [ "$BURAQ_ATTEMPT" -ge 3 ] || { echo "not yet" >&2; exit 1; }',
        "reject": 'echo "$BURAQ_ATTEMPT" >> "$LOG"; echo "no such order" >&2; exit 64',
        "slow": 'sleep 30 & echo "$!" >> "$LOG"; wait',
    }
    pipelines: dict[str, str] = {}
    for kind, script in scripts.items():
        pipelines[kind] = unique(f"shell-{kind}")
        (tmp_path / "pipelines" / f"{kind}.yaml").write_text(textwrap.dedent(f"""\
            name: {pipelines[kind]}
            handler: shell.run
            retry: {{attempts: 3, backoff: {{initial: 10ms, max: 50ms}}}}
            options:
              command: [sh, -c, {json.dumps(script)}]
              env: {{LOG: "{logs[kind]}"}}
              timeout: 300ms
              reject_exit_codes: [64]
            """))
    with buraq.Client(redis_url=redis_url, pipelines=tmp_path / "pipelines", plugins_dir=None) as client:
        ids = {kind: client.enqueue(name, {"kind": kind}) for kind, name in pipelines.items()}

    # When buraq serve runs them until every pipeline is idle
    started = time.monotonic()
    result = run_buraq(tmp_path, redis_url, "serve", "pipelines", "--burst", "--listen", "off")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # the 30 s sleeps were not waited for

    def dlq(kind: str) -> list[dict[bytes, bytes]]:
        return [fields for _, fields in redis.xrange(f"buraq:{{{pipelines[kind]}}}:dlq")]

    def runs(kind: str) -> list[str]:
        return logs[kind].read_text().split("\n")[:-1]

    # Then the succeeding command ran once, with the payload on stdin, and was acknowledged
    assert runs("ok") == ['1 {"kind":"ok"}']
    # And the one failing twice was retried, then succeeded
    assert runs("flaky") == ["1", "2", "3"]
    for kind in ("ok", "flaky"):
        assert dlq(kind) == [], kind
        assert redis.xpending(f"buraq:{{{pipelines[kind]}}}:tasks", "buraq")["pending"] == 0, kind
    # And exit 64 (in reject_exit_codes) was dead-lettered at once as rejected, with the stderr tail
    assert runs("reject") == ["1"]
    [rejected] = dlq("reject")
    assert rejected[b"reason"] == b"rejected" and rejected[b"attempts"] == b"1"
    assert rejected[b"id"] == ids["reject"].encode()
    assert rejected[b"error"] == b"command sh exited with 64 (in reject_exit_codes); stderr: no such order"
    # And the command past its timeout was killed with its child, retried, then dead-lettered
    [timed_out] = dlq("slow")
    assert timed_out[b"reason"] == b"handler_error" and timed_out[b"error_type"] == b"CommandTimeout"
    assert timed_out[b"attempts"] == b"3"
    assert timed_out[b"error"] == b"command sh timed out after 0.3s; its process group was killed"
    sleepers = [int(pid) for pid in runs("slow")]
    assert len(sleepers) == 3 and all(gone(pid) for pid in sleepers)
