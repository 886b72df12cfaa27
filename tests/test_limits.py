"""`rate_limit` and `concurrency` hold across worker processes, and a dead worker's permits come back."""

from __future__ import annotations

import signal
import time

from conftest import Project, wait_for

PROBE_PLUGIN = '''
import asyncio, os, time
import buraq

def record(kind, *parts):
    with open(os.path.join(os.environ["BURAQ_RECORDS"], kind), "a") as f:
        f.write(" ".join(str(p) for p in parts) + "\\n")

async def probe(task):
    """Record start and end (wall clock) and the worker's pid; sleep payload.seconds in between."""
    start = time.time()
    await asyncio.sleep(float(task.payload.get("seconds", 0)))
    record("runs", task.id, os.getpid(), f"{start:.4f}", f"{time.time():.4f}")

@buraq.hookimpl
def register_handlers(register):
    register("limits.probe", probe)
'''


def _runs(project: Project) -> list[tuple[str, int, float, float]]:
    rows = []
    for line in project.recorded("runs"):
        task_id, pid, start, end = line.split()
        rows.append((task_id, int(pid), float(start), float(end)))
    return rows


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t comes before a start at t)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def _two_servers(project: Project) -> list:
    servers = [project.serve(), project.serve()]
    for server in servers:
        server.wait_ready()
    return servers


def _stop(servers: list) -> None:
    for server in servers:
        server.signal(signal.SIGTERM)
    for server in servers:
        assert server.wait() == 0, server.output()


def test_rate_limit_holds_across_two_processes(project: Project, redis) -> None:
    # Given 20 starts per second for the pipeline, and two workers with 10 slots each
    project.plugin("probe.py", PROBE_PLUGIN)
    name = project.pipeline("paced", "handler: limits.probe\npool: 10\nrate_limit: {tasks: 20, per: 1s}\n")
    servers = _two_servers(project)

    # When 60 tasks arrive at once
    project.buraq("enqueue", name, input="\n".join('{"seconds": 0.05}' for _ in range(60)))
    pending: list[int] = []

    def all_ran() -> bool:
        pending.append(redis.xpending(f"buraq:{{{name}}}:tasks", "buraq")["pending"])
        return len(project.recorded("runs")) >= 60

    wait_for(all_ran, timeout=30, message="60 runs")
    _stop(servers)
    # (entries not yet allowed to start wait unread in the stream: only running ones are pending)
    assert max(pending) <= 4, max(pending)

    # Then both workers ran tasks, at 20 per second overall, and no 1 s window saw more than 21 starts
    runs = _runs(project)
    assert len({pid for _, pid, _, _ in runs}) == 2
    starts = sorted(start for _, _, start, _ in runs)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    busiest = max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts)
    print(f"rate limit 20/s over two workers: achieved {rate:.2f}/s, busiest 1 s window {busiest} starts")
    # (measured by the handlers' clocks: a stalled event loop can bunch two starts whose slots passed
    # meanwhile, so allow a little over the bound of tasks + 1 that Redis's schedule keeps)
    assert 18.0 <= rate <= 22.0, rate
    assert busiest <= 21 + 2, busiest


def test_concurrency_cap_is_never_exceeded_across_two_processes(project: Project, redis) -> None:
    # Given at most 3 running at once, and two workers with 5 slots each
    project.plugin("probe.py", PROBE_PLUGIN)
    name = project.pipeline("capped", "handler: limits.probe\npool: 5\nconcurrency: 3\nlease: 2s\n")
    servers = _two_servers(project)

    # When 30 tasks of 0.2 s each arrive
    project.buraq("enqueue", name, input="\n".join('{"seconds": 0.2}' for _ in range(30)))
    wait_for(lambda: len(project.recorded("runs")) >= 30, timeout=30, message="30 runs")
    _stop(servers)

    # Then at most 3 ran at any instant, the cap was used, and both workers took part
    runs = _runs(project)
    peak = _max_overlap([(start, end) for _, _, start, end in runs])
    span = max(end for *_, end in runs) - min(start for _, _, start, _ in runs)
    print(f"concurrency 3 over two workers of pool 5: peak overlap {peak}, 30 x 0.2 s in {span:.2f} s")
    assert peak <= 3
    assert peak == 3
    assert span >= 30 * 0.2 / 3 - 0.05
    assert len({pid for _, pid, _, _ in runs}) == 2
    assert redis.zcard(f"buraq:{{{name}}}:permits") == 0  # every permit given back


def test_a_dead_workers_permits_come_back_after_its_lease(project: Project, redis) -> None:
    # Given one permit, held by a worker running a long task
    project.plugin("probe.py", PROBE_PLUGIN)
    name = project.pipeline("single", "handler: limits.probe\nconcurrency: 1\nlease: 1s\n"
                                      "retry: {attempts: 1}\n")  # the killed task is not run again
    doomed = project.serve()
    doomed.wait_ready()
    project.buraq("enqueue", name, '{"seconds": 30}')
    wait_for(lambda: redis.zcard(f"buraq:{{{name}}}:permits") == 1, message="the permit taken")

    # When that worker is SIGKILLed and a short task waits behind it
    doomed.kill()
    killed_at = time.time()
    project.buraq("enqueue", name, '{"seconds": 0}')
    survivor = project.serve()
    survivor.wait_ready()

    # Then the short task runs once the dead worker's lease (1 s) ran out, not after 30 s
    wait_for(lambda: project.recorded("runs"), timeout=15, message="the short task ran")
    first = _runs(project)[0]
    waited = first[2] - killed_at
    print(f"permit of a SIGKILLed worker came back after {waited:.2f} s (lease 1 s)")
    assert 0.5 <= waited <= 5.0, waited
    wait_for(lambda: redis.xlen(f"buraq:{{{name}}}:dlq") == 1, message="the killed task dead-lettered")
    assert redis.xrange(f"buraq:{{{name}}}:dlq")[0][1][b"reason"] == b"worker_lost"
    survivor.signal(signal.SIGTERM)
    assert survivor.wait() == 0, survivor.output()


def test_an_idle_worker_keeps_no_rate_slot_for_nothing(project: Project) -> None:
    # Given one start a minute, a worker that has been idle for a few seconds
    project.plugin("probe.py", PROBE_PLUGIN)
    name = project.pipeline("slow-rate", "handler: limits.probe\nrate_limit: {tasks: 1, per: 60s}\n")
    server = project.serve()
    server.wait_ready()
    time.sleep(3)  # several blocking reads that found nothing

    # When a task arrives
    enqueued_at = time.time()
    project.buraq("enqueue", name, '{"seconds": 0}')

    # Then it starts at once: no slot was spent on the empty reads before it
    wait_for(lambda: project.recorded("runs"), timeout=15, message="the task ran (not a minute later)")
    assert _runs(project)[0][2] - enqueued_at < 5
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
