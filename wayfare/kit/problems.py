"""RFC 9457 problem details: every error a Wayfare service answers has this shape."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson

__all__ = ["PROBLEM_JSON", "Problem", "problem_body"]

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """A refusal to send to the client as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.type = type_
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str | None = None) -> bytes:
        return problem_body(
            self.status,
            self.detail,
            title=self.title,
            type_=self.type,
            instance=instance,
            **self.extensions,
        )


def problem_body(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    instance: str | None = None,
    **extensions: Any,
) -> bytes:
    doc: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        doc["detail"] = detail
    if instance:
        doc["instance"] = instance
    doc.update(extensions)
    return orjson.dumps(doc)
