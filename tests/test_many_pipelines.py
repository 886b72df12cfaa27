"""One `buraq serve` with many pipelines: its Redis connection pool must fit them all."""

from __future__ import annotations

from conftest import Project


def test_forty_pipelines_in_one_process_all_drain(recorder: Project) -> None:
    # Given 40 pipelines (each holds several pooled connections: a blocking read, heartbeat, reclaim, ...)
    names = [recorder.pipeline(f"many-{n}", "handler: test.ok\npool: 4\n") for n in range(40)]
    ids = []
    for name in names:
        ids += recorder.buraq("enqueue", name, input="{}\n{}\n{}\n").stdout.split()

    # When one process serves them until idle
    result = recorder.buraq("serve", "pipelines", "--plugins-dir", "plugins", "--burst", "--listen", "off",
                            timeout=180)

    # Then every task ran, with no "Too many connections" on the way
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Too many connections" not in result.stderr
    assert sorted(line.split()[0] for line in recorder.recorded("ok")) == sorted(ids)
