"""The credential services present to each other's internal endpoints.

Internal routes (holds, confirm, release) are never routed by the gateway and also
refuse any caller without the shared service token, compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from wayfare.kit.problems import Problem

__all__ = ["SERVICE_TOKEN_HEADER", "ServiceCaller", "service_caller"]

SERVICE_TOKEN_HEADER = "X-Service-Token"  # noqa: S105 - a header name, not a secret


async def service_caller(request: Request) -> None:
    expected: str | None = request.app.state.service_token
    presented = request.headers.get(SERVICE_TOKEN_HEADER)
    if (
        not expected
        or presented is None
        or not hmac.compare_digest(presented.encode(), expected.encode())
    ):
        raise Problem(403, "internal endpoint: a valid service credential is required")


ServiceCaller = Annotated[None, Depends(service_caller)]
