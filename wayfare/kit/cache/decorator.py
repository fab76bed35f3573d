"""Cache-aside as a decorator: the function's arguments make the key, its annotation the type."""

from __future__ import annotations

import functools
import inspect
import string
import typing
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Generic, ParamSpec, TypeVar, cast

from wayfare.kit.cache.cache import Namespace
from wayfare.kit.cache.codec import encode

__all__ = ["CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")


class CachedFunction(Generic[P, R]):
    """An async function whose results are read through a cache namespace.

    Called exactly like the function it wraps; `invalidate` with the same arguments drops
    the cached result.
    """

    __name__: str
    __qualname__: str

    def __init__(
        self,
        func: Callable[P, Awaitable[R]],
        namespace: Namespace,
        *,
        ttl: float | None,
        key: str | None,
        tags: Collection[str],
    ) -> None:
        self.__wrapped__ = func
        self.namespace = namespace
        self._ttl = ttl
        self._key = key
        self._tags = tuple(tags)
        self._signature = inspect.signature(func)
        for template in (key, *self._tags):
            if template is not None:
                _check_template(template, self._signature, func)
        try:
            self._returns: object = typing.get_type_hints(func).get("return", Any)
        except NameError as exc:
            raise TypeError(
                f"cannot resolve the return annotation of {func.__qualname__}: {exc}"
            ) from exc
        functools.update_wrapper(self, func)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        arguments = self._arguments(args, kwargs)
        return await self.namespace.get_or_load(
            self._key_for(arguments),
            functools.partial(self.__wrapped__, *args, **kwargs),
            cast("type[R]", self._returns),
            ttl=self._ttl,
            tags=[tag.format_map(arguments) for tag in self._tags],
        )

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Drop the cached result of the call with these arguments."""
        await self.namespace.delete(self.key_for(*args, **kwargs))

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key, within the namespace, of the call with these arguments."""
        return self._key_for(self._arguments(args, kwargs))

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def _key_for(self, arguments: dict[str, Any]) -> str:
        if self._key is not None:
            return self._key.format_map(arguments)
        try:
            parts = [encode(value).decode() for value in arguments.values()]
        except TypeError as exc:
            raise TypeError(
                f"{self.__wrapped__.__qualname__}: give cached() a key template, since {exc}"
            ) from exc
        return ":".join([self.__wrapped__.__qualname__, *parts])


def cached(
    namespace: Namespace,
    *,
    ttl: float | None = None,
    key: str | None = None,
    tags: Collection[str] = (),
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """Read an async function's results through `namespace`, one load per key at a time.

    `key` and `tags` are `str.format` templates over the parameters, such as
    `key="{hotel_id}:{night}"` and `tags=["hotel:{hotel_id}"]`; without `key`, the key is
    the function's name and its JSON-encoded arguments. The return annotation says what
    a hit is rebuilt into (a pydantic model, a dataclass, `list[Flight]`, ...). Apply it
    where the cache exists, in the service's bootstrap, not at import.
    """

    def decorate(func: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        return CachedFunction(func, namespace, ttl=ttl, key=key, tags=tags)

    return decorate


def _check_template(template: str, signature: inspect.Signature, func: object) -> None:
    """Fail at decoration, not on the first call, when a template names no parameter."""
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        if name not in signature.parameters:
            raise ValueError(f"template {template!r} names {name!r}, not a parameter of {func!r}")
