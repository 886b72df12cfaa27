"""Which Redis to use, how to connect to it, and how to name it without leaking a password."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError, ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

log = logging.getLogger("buraq.connection")

URL_VARIABLES = ("BURAQ_REDIS_URL", "REDIS_URL")
_PASSWORD = re.compile(r"(?P<scheme>[a-z+]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&#\s]*", re.IGNORECASE)


def configured_url(explicit: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The Redis URL from ``--redis-url``, ``BURAQ_REDIS_URL`` or ``REDIS_URL``; None means embedded."""
    if explicit:
        return explicit
    environ = os.environ if environ is None else environ
    for name in URL_VARIABLES:
        if environ.get(name):
            return environ[name]
    return None


def redact(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; safe to log."""
    url = _PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _QUERY_PASSWORD.sub(lambda m: f"{m['key']}***", url)


def client(url: str, max_connections: int | None = None) -> aioredis.Redis:
    """An asyncio client with timeouts, so a dead server is noticed instead of waited on forever."""
    tcp_only = {} if url.startswith("unix:") else {"socket_keepalive": True}
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
        max_connections=max_connections,
        **tcp_only,
    )


async def wait_until_ready(redis: aioredis.Redis, url: str, give_up_after: float | None = None) -> None:
    """PING until Redis answers, with capped, jittered backoff and one log line per attempt."""
    delay = 0.5
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            await redis.ping()
            if attempt > 1:
                log.info("connected to %s after %d attempts", redact(url), attempt)
            return
        except (RedisConnectionError, RedisTimeout, BusyLoadingError, OSError) as exc:
            if give_up_after is not None and waited >= give_up_after:
                raise
            pause = delay * (0.5 + random.random() / 2)
            log.warning("Redis at %s not ready (attempt %d: %s); retrying in %.1fs",
                        redact(url), attempt, redact(str(exc)), pause)
            await asyncio.sleep(pause)
            waited += pause
            delay = min(delay * 2, 30.0)
