"""Cached values as compact JSON: orjson writes them, pydantic rebuilds the declared type."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter

__all__ = ["Decoder", "decoder_for", "encode"]

Decoder = Callable[[bytes], Any]


def _fallback(value: object) -> object:
    if isinstance(value, BaseModel):
        # By alias, because validation reads aliases unless a model opts out.
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"cannot cache a {type(value).__name__}: it is not JSON-serializable")


def encode(value: object) -> bytes:
    """JSON bytes; dataclasses, datetimes, UUIDs and enums natively, pydantic models by dump."""
    return orjson.dumps(value, default=_fallback)


@lru_cache(maxsize=512)
def _cached_decoder(type_: Any) -> Decoder:
    return TypeAdapter[Any](type_).validate_json


def decoder_for(type_: Any) -> Decoder:
    """A function from JSON bytes to `type_`, raising ValueError when they do not fit.

    `Any` (or `object`) gives the plain JSON data back. Decoders are built once per type,
    since a TypeAdapter costs far more to build than to use.
    """
    if type_ is Any or type_ is object:
        return orjson.loads
    try:
        return _cached_decoder(type_)
    except TypeError:  # an unhashable type form (Annotated with a list, say): build anew
        return TypeAdapter[Any](type_).validate_json
