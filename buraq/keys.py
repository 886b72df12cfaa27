"""Where a pipeline's data lives in Redis.

Every key a pipeline uses carries the same hash tag, so on Redis Cluster they
share one slot and the Lua scripts that touch several of them stay legal.
"""

from __future__ import annotations

GROUP = "buraq"


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the first non-empty ``{...}``, else all of it."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def default_stream(pipeline: str) -> str:
    return f"buraq:{{{pipeline}}}:tasks"


def sibling(stream: str, suffix: str) -> str:
    """A key in the stream's hash slot: ``buraq:{orders}:tasks`` -> ``buraq:{orders}:<suffix>``."""
    tag = hash_tag(stream)
    if tag != stream:
        return f"{stream[: stream.find('{')]}{{{tag}}}:{suffix}"
    if "}" in stream:
        # Wrapping it in braces would hash only the part before its '}': no sibling can share its slot.
        raise ValueError(f"stream {stream!r} contains '}}' but no hash tag; give it one, e.g. 'jobs:{{jobs}}'")
    return f"{{{stream}}}:{suffix}"


def default_dlq(stream: str) -> str:
    return sibling(stream, "dlq")


def delayed_key(stream: str) -> str:
    return sibling(stream, "delayed")


def same_slot(a: str, b: str) -> bool:
    return hash_tag(a) == hash_tag(b)
