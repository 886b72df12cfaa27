"""The JSON codec: the one payload format every producer language can write."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from buraq.hookspecs import hookimpl


class JsonCodec:
    """Strict JSON in UTF-8: no NaN or Infinity, which other languages cannot read."""

    name = "json"

    def encode(self, value: Any) -> bytes:
        return _ENCODER.encode(value).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        return _DECODER.decode(data.decode("utf-8"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads/dumps with options build a new decoder/encoder per call (a hot-path cost).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@hookimpl(trylast=True)
def register_codecs(register: Callable[..., None]) -> None:
    register("json", JsonCodec())
