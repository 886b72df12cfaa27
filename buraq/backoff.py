"""How long a failed task waits before its next attempt: one pure function."""

from __future__ import annotations

import asyncio

import random

from buraq.config import Backoff


def retry_delay(policy: Backoff, failed_attempt: int, rand: random.Random | None = None) -> float:
    """Seconds to wait after attempt ``failed_attempt`` (1-based) failed.

    Exponential from ``initial`` by ``multiplier``, capped at ``max``; then up to
    ``jitter`` of it is taken away at random so retries of a burst spread out
    without ever waiting longer than the cap.
    """
    exponent = max(0, failed_attempt - 1)
    try:
        delay = policy.initial * policy.multiplier**exponent
    except OverflowError:
        delay = policy.max
    delay = min(delay, policy.max)
    if policy.jitter:
        delay -= delay * policy.jitter * (rand or random).random()
    return max(0.0, delay)


def pause_after(failures: int, first: float, cap: float) -> float:
    """Seconds to wait after ``failures`` failures in a row of a Redis step: ``first`` doubling, capped."""
    return min(cap, first * 2 ** min(failures, 16))


async def sleep_unless(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``event`` is set meanwhile (a stop, say); True when it was set.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that lands as
    its timeout fires, and a loop around it then never ends (a `buraq test` run hung at exit on it).
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
