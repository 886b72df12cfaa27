"""The tick arithmetic and misfire policies of buraq.schedules (pure functions: no Redis here)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from buraq.schedules import (RUN_ALL_LIMIT, Schedule, default_name, due_ticks, grace_ms, latest_tick_at_or_before,
                             never_fires, next_tick, plan, upcoming)

H = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_every_ticks_sit_on_multiples_of_the_interval() -> None:
    every = Schedule(name="e", every=30)
    assert next_tick(every, 0) == 30_000
    assert next_tick(every, 29_999) == 30_000
    assert next_tick(every, 30_000) == 60_000  # strictly after
    assert upcoming(every, 45_000, 3) == [60_000, 90_000, 120_000]


def test_cron_ticks_follow_the_time_zone_and_its_daylight_saving_changes() -> None:
    nightly = Schedule(name="n", cron="0 2 * * *", timezone="Europe/Berlin")
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Berlin, so that night's 02:00 happens at 03:00 CEST
    assert next_tick(nightly, ms("2026-03-28T12:00:00+00:00")) == ms("2026-03-29T03:00:00+02:00")
    assert next_tick(nightly, ms("2026-03-29T12:00:00+00:00")) == ms("2026-03-30T02:00:00+02:00")
    utc = Schedule(name="u", cron="*/5 * * * *")
    assert next_tick(utc, ms("2026-11-27T09:03:00+00:00")) == ms("2026-11-27T09:05:00+00:00")


def test_due_ticks_lists_what_came_due_and_keeps_the_newest_when_capped() -> None:
    every = Schedule(name="e", every=1)
    assert due_ticks(every, 10_000, 13_500) == [11_000, 12_000, 13_000]
    assert due_ticks(every, 10_000, 10_999) == []
    capped = due_ticks(every, 0, 5_000_000, limit=3)
    assert capped == [4_998_000, 4_999_000, 5_000_000]


def test_grace_is_one_interval_at_most_a_minute() -> None:
    assert grace_ms(Schedule(name="e", every=1), 0) == 1_000
    assert grace_ms(Schedule(name="e", every=3600), 0) == 60_000
    assert grace_ms(Schedule(name="c", cron="0 * * * *"), ms("2026-11-27T10:30:00+00:00")) == 60_000


@pytest.mark.parametrize("policy, fired", [
    ("skip", []),
    ("run_once", [ms("2026-11-27T12:00:00+00:00")]),
    ("run_all", [ms("2026-11-27T11:00:00+00:00"), ms("2026-11-27T12:00:00+00:00")]),
])
def test_an_hourly_schedule_down_from_10_30_to_12_15(policy: str, fired: list[int]) -> None:
    hourly = Schedule(name="h", cron="0 * * * *", misfire=policy)
    last, now = ms("2026-11-27T10:00:00+00:00"), ms("2026-11-27T12:15:00+00:00")
    ticks, new_last, missed = plan(hourly, last, now)
    assert ticks == fired
    assert missed == 2
    assert new_last == ms("2026-11-27T12:00:00+00:00")  # missed ticks are never looked at again


@pytest.mark.parametrize("policy", ["skip", "run_once", "run_all"])
def test_a_tick_within_its_grace_is_on_time_and_fires_under_every_policy(policy: str) -> None:
    hourly = Schedule(name="h", cron="0 * * * *", misfire=policy)
    last, now = ms("2026-11-27T11:00:00+00:00"), ms("2026-11-27T12:00:00.400+00:00")
    assert plan(hourly, last, now) == ([ms("2026-11-27T12:00:00+00:00")], ms("2026-11-27T12:00:00+00:00"), 0)


def test_nothing_due_changes_nothing() -> None:
    every = Schedule(name="e", every=10)
    assert plan(every, 10_000, 19_999) == ([], 10_000, 0)


def test_run_all_is_capped() -> None:
    every = Schedule(name="e", every=1, misfire="run_all")
    ticks, new_last, _ = plan(every, 0, (RUN_ALL_LIMIT + 500) * 1000)
    assert len(ticks) == RUN_ALL_LIMIT and ticks[-1] == new_last == (RUN_ALL_LIMIT + 500) * 1000


def test_default_names_follow_the_settings() -> None:
    a = default_name({"cron": "0 3 * * *", "timezone": "UTC", "payload": {"x": 1}})
    assert a == default_name({"payload": {"x": 1}, "timezone": "UTC", "cron": "0 3 * * *"})
    assert a != default_name({"cron": "0 3 * * *", "timezone": "UTC", "payload": {"x": 2}})
    assert len(a) == 12


def test_a_month_long_outage_of_a_per_minute_cron_is_planned_quickly() -> None:
    import time

    minutely = Schedule(name="m", cron="* * * * *", misfire="run_all")
    started = time.perf_counter()
    ticks, new_last, missed = plan(minutely, ms("2026-10-27T00:00:00+00:00"), ms("2026-11-27T00:00:30+00:00"))
    assert time.perf_counter() - started < 2.0
    assert len(ticks) == RUN_ALL_LIMIT and new_last == ms("2026-11-27T00:00:00+00:00")


def test_cron_tick_exactly_now_counts_as_due() -> None:
    hourly = Schedule(name="h", cron="0 * * * *")
    now = ms("2026-11-27T12:00:00+00:00")
    assert latest_tick_at_or_before(hourly, now) == now
    assert due_ticks(hourly, now - H, now) == [now]


def test_impossible_cron_is_recognised() -> None:
    assert never_fires(Schedule(name="f", cron="0 0 30 2 *"), ms("2026-11-27T00:00:00+00:00"))
    assert not never_fires(Schedule(name="d", cron="0 3 * * *"), ms("2026-11-27T00:00:00+00:00"))
