"""Which Redis to use, how to connect to it, and how to name it without leaking a password.

A Redis Cluster is used through redis-py's cluster client, chosen either by the URL
(``redis+cluster://`` or ``rediss+cluster://``) or, for a plain ``redis://`` URL, by
asking the server on connect (``INFO cluster`` says ``cluster_enabled:1``). Every key of
a pipeline shares one hash slot (see keys.py), so nothing else changes in cluster mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (BusyLoadingError, ClusterDownError, ConnectionError as RedisConnectionError,
                              RedisClusterException, RedisError, TimeoutError as RedisTimeout)

from buraq.errors import BuraqError

log = logging.getLogger("buraq.connection")

URL_VARIABLES = ("BURAQ_REDIS_URL", "REDIS_URL")
_PASSWORD = re.compile(r"(?P<scheme>[a-z+]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&#\s]*", re.IGNORECASE)
# URL schemes that ask for cluster mode, and the plain scheme redis-py is given instead.
CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}
# What a client of either kind raises while Redis is away: a cluster client with no reachable
# node, or with a slot nobody serves yet (mid-failover), raises RedisClusterException, not a RedisError.
REDIS_TROUBLE = (RedisError, RedisClusterException, OSError)


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


def client(url: str, max_connections: int | None = None,
           cluster: bool = False) -> aioredis.Redis | RedisCluster:
    """An asyncio client with timeouts, so a dead server is noticed instead of waited on forever.

    A ``redis+cluster://`` URL (or ``cluster=True``) gives a cluster client; no server is asked.
    """
    tcp_only = {} if url.startswith("unix:") else {"socket_keepalive": True}
    options = dict(socket_connect_timeout=5, socket_timeout=30, health_check_interval=15,
                   max_connections=max_connections, **tcp_only)
    plain, wants_cluster = cluster_url(url)
    if wants_cluster or cluster:
        return RedisCluster.from_url(plain, **{k: v for k, v in options.items() if v is not None})
    return aioredis.Redis.from_url(url, **options)


def cluster_url(url: str) -> tuple[str, bool]:
    """``redis+cluster://h:p`` -> (``redis://h:p``, True); any other URL comes back as it is, with False."""
    for scheme, plain in CLUSTER_SCHEMES.items():
        if url.lower().startswith(scheme):
            return plain + url[len(scheme):], True
    return url, False


async def connect(url: str, give_up_after: float | None = None,
                  max_connections: int | None = None) -> aioredis.Redis | RedisCluster:
    """Wait until Redis answers (see wait_until_ready), then return a client of the kind it needs.

    A plain URL that points at a cluster node is switched to cluster mode here, so the same
    ``REDIS_URL`` works whether the server is one Redis or one node of a cluster.
    """
    redis = client(url, max_connections)
    await wait_until_ready(redis, url, give_up_after)
    if isinstance(redis, RedisCluster) or not await _cluster_enabled(redis):
        return redis
    await redis.aclose()
    log.info("%s is a Redis Cluster node: using cluster mode", redact(url))
    return client(url, max_connections, cluster=True)


async def _cluster_enabled(redis: aioredis.Redis) -> bool:
    try:
        info = await redis.info("cluster")
    except RedisError:  # e.g. an ACL user without INFO: assume plain Redis, as before
        return False
    return str(info.get("cluster_enabled", 0)) == "1"


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
        except (RedisConnectionError, RedisTimeout, BusyLoadingError, ClusterDownError, RedisClusterException,
                OSError) as exc:
            _unless_not_a_cluster(exc, url)
            if give_up_after is not None and waited >= give_up_after:
                if isinstance(exc, RedisClusterException):  # no node reachable: say so like for one Redis
                    raise RedisConnectionError(str(exc)) from exc
                raise
            pause = delay * (0.5 + random.random() / 2)
            log.warning("Redis at %s not ready (attempt %d: %s); retrying in %.1fs",
                        redact(url), attempt, redact(str(exc)), pause)
            await asyncio.sleep(pause)
            waited += pause
            delay = min(delay * 2, 30.0)


def _unless_not_a_cluster(exc: Exception, url: str) -> None:
    """A cluster URL for a server without cluster mode is a user error, not a server to wait for."""
    if isinstance(exc, RedisClusterException) and "not enabled" in str(exc):
        raise BuraqError(f"{redact(url)} asks for Redis Cluster, but that server is not a cluster node; "
                         f"use a redis:// URL") from None
