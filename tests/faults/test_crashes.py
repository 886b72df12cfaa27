"""Workers die (SIGKILL, os._exit, a stop that cannot wait): no task is lost, each ends once."""

from __future__ import annotations

import json
import signal
import statistics
import time

from buraq import Client

from conftest import Project, Server, wait_for
from history import dlq_ids, events, install, pending, pending_of
from oracle import assert_valid, check

TASKS = 10_000


def test_sigkill_every_few_seconds_during_10000_tasks_across_two_processes(project: Project, redis) -> None:
    # Given 10,000 tasks of 0.1 s, two workers with a 2 s lease
    install(project)
    name = project.pipeline("crashy", """
        handler: fault.work
        pool: 25
        lease: 2s
        options: {seconds: 0.1}
        retry: {attempts: 10, backoff: {initial: 100ms, jitter: 0}}
    """)
    with Client(project.redis_url, pipelines=str(project.pipelines)) as client:
        enqueued = set(client.enqueue_many(name, [{"n": i} for i in range(TASKS)]))
    workers: dict[int, tuple[str, Server]] = {}

    def start(slot: int, generation: int) -> None:
        consumer = f"w{slot}-g{generation}"
        workers[slot] = (consumer, project.serve("--consumer", consumer))

    start(0, 0)
    start(1, 0)
    for _, server in workers.values():
        server.wait_ready()  # on a loaded machine a start can take longer than the first 3 s pause
    crashes: list[dict[str, object]] = []
    deadline = time.monotonic() + 240
    generation = 0

    # When one of them is SIGKILLed every 3 s until the queue is empty
    def finished() -> bool:
        done = {e.task_id for e in events(project, "done")}
        return len(done | set(dlq_ids(redis, name))) >= TASKS and pending(redis, name) == 0

    while not finished():
        assert time.monotonic() < deadline, "the run did not finish in 240 s"
        time.sleep(3)
        if finished():
            break
        slot = generation % 2
        generation += 1
        consumer, victim = workers[slot]
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.time()
        victim.wait()
        # Its pending list is frozen now (nobody takes it over before its 2 s lease runs out):
        # exactly what it had read and not acknowledged when it died.
        in_flight = pending_of(redis, name, consumer)
        crashes.append({"consumer": consumer, "in_flight": in_flight, "killed_at": killed_at})
        start(slot, generation)

    for _, server in workers.values():
        server.wait_ready()  # a replacement started a moment ago has its signal handlers only once it serves
        server.signal(signal.SIGTERM)
    for _, server in workers.values():
        assert server.wait(60) == 0, server.output()

    # Then nothing is lost, each task ends once, and duplicates stay within what was in flight
    completions = [e.task_id for e in events(project, "done")]
    verdict = check(enqueued, completions, dlq_ids(redis, name))
    in_flight_total = sum(len(c["in_flight"]) for c in crashes)  # type: ignore[arg-type]
    assert_valid(verdict, max_extra_runs=in_flight_total)
    assert len(crashes) >= 3, "the run was too short to crash anything"
    assert pending(redis, name) == 0
    assert verdict.dead == set(), verdict.summary()

    # And each crash's tasks were picked up again
    starts = events(project, "start")
    pickups = []
    for crash in crashes:
        killed_at = float(crash["killed_at"])  # type: ignore[arg-type]
        ids = set(crash["in_flight"])  # type: ignore[arg-type]
        restarted: dict[str, float] = {}
        for event in starts:
            if event.task_id in ids and event.at > killed_at and event.task_id not in restarted:
                restarted[event.task_id] = event.at
        assert set(restarted) == ids, f"tasks of {crash['consumer']} never restarted: {ids - set(restarted)}"
        if ids:
            pickups.append(max(restarted.values()) - killed_at)
    reclaimed = {e.task_id for e in starts if e.attempt > 1}
    assert reclaimed, "no task was seen on a later attempt"
    report = {"tasks": TASKS, "crashes": len(crashes), "lost": len(verdict.lost),
              "in_flight_at_crashes": in_flight_total, "duplicate_runs": verdict.extra_runs,
              "pickup_seconds_median": round(statistics.median(pickups), 2) if pickups else None,
              "pickup_seconds_max": round(max(pickups), 2) if pickups else None}
    print("\nSIGKILL run:", json.dumps(report))


def test_restarted_consumer_finishes_its_own_pending_history_first(project: Project, redis) -> None:
    # Given a worker with a fixed name killed while holding 10 tasks, and a long lease (no takeover)
    install(project)
    name = project.pipeline("history", """
        handler: fault.work
        pool: 10
        lease: 60s
        options: {seconds: 30}
    """)
    ids = project.buraq("enqueue", name, input="{}\n" * 10).stdout.split()
    first = project.serve("--consumer", "stable")
    wait_for(lambda: len(events(project, "start")) == 10, message="10 tasks started")
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    assert sorted(pending_of(redis, name, "stable")) == sorted(ids)

    # When it restarts under the same name (with quick tasks now)
    (project.pipelines / "history.yaml").write_text(
        (project.pipelines / "history.yaml").read_text().replace("seconds: 30", "seconds: 0.01"))
    second = project.serve("--consumer", "stable")

    # Then it runs those 10 again, as attempt 2, and acknowledges them
    wait_for(lambda: len(events(project, "done")) == 10, message="history finished")
    assert sorted(e.task_id for e in events(project, "done")) == sorted(ids)
    assert {e.attempt for e in events(project, "done")} == {2}
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert pending(redis, name) == 0


def test_poison_task_that_kills_its_worker_reaches_the_dlq_after_its_attempts(project: Project, redis) -> None:
    # Given a task that kills the worker process every time it runs, among good tasks
    # (pool 1: a task that kills its process also kills whatever runs beside it in that process)
    install(project)
    name = project.pipeline("poison", """
        handler: fault.exit
        pool: 1
        lease: 1s
        retry: {attempts: 3}
    """)
    poison = project.buraq("enqueue", name, '{"die": true}').stdout.strip()
    good = project.buraq("enqueue", name, input='{"die": false}\n' * 5).stdout.split()

    # When a supervisor keeps restarting the worker (as systemd or Kubernetes would)
    deadline = time.monotonic() + 90
    restarts = 0
    while poison not in dlq_ids(redis, name):
        assert time.monotonic() < deadline, f"poison task never reached the DLQ after {restarts} restarts"
        server = project.serve()
        try:
            server.wait(5)
        except Exception:
            server.signal(signal.SIGTERM)
            server.wait(30)
        restarts += 1

    # Then it ran exactly 3 times, counted by Redis's delivery counter, and sits in the DLQ once
    runs = [e for e in events(project, "start") if e.task_id == poison]
    assert [e.attempt for e in runs] == [1, 2, 3]
    [(_, entry)] = [(i, f) for i, f in redis.xrange(f"buraq:{{{name}}}:dlq") if f[b"id"].decode() == poison]
    assert entry[b"reason"] == b"worker_lost"
    assert entry[b"crashes"] == b"3"
    assert entry[b"payload"] == b'{"die":true}'
    # And the good tasks were done, each once
    assert sorted(e.task_id for e in events(project, "done")) == sorted(good)


def test_entries_trimmed_while_pending_are_counted_and_dropped(project: Project, redis) -> None:
    # Given a worker killed while holding 100 pending entries, which are then trimmed away
    install(project)
    name = project.pipeline("trimmed", """
        handler: fault.work
        pool: 100
        lease: 1s
        options: {seconds: 30}
    """)
    project.buraq("enqueue", name, input="{}\n" * 100)
    first = project.serve("--consumer", "doomed")
    wait_for(lambda: len(events(project, "start")) == 100, message="100 tasks started")
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    redis.xtrim(f"buraq:{{{name}}}:tasks", maxlen=0)
    assert pending(redis, name) == 100

    # When another worker takes over
    second = project.serve()
    second.wait_ready()

    # Then it drops all 100 without crashing, counts them, and nothing stays pending
    wait_for(lambda: pending(redis, name) == 0, message="pending list emptied")
    wait_for(lambda: f'buraq_entries_trimmed_total{{pipeline="{name}"}} 100.0' in second.metrics(),
             message="100 trimmed entries counted")
    assert len(events(project, "start")) == 100  # nothing ran again
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
