"""FastAPI dependencies: the caller's verified identity from the bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wayfare.kit.auth.tokens import InvalidToken, Principal, TokenVerifier
from wayfare.kit.problems import Problem

__all__ = ["AdminUser", "CurrentUser", "admin_user", "bearer_token", "current_user", "unauthorized"]


def unauthorized(detail: str = "a valid bearer token is required") -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="wayfare"'})


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_user(request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise unauthorized()
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return await verifier.verify(token)
    except InvalidToken as exc:
        raise unauthorized("the bearer token is invalid") from exc


async def admin_user(request: Request) -> Principal:
    principal = await current_user(request)
    if not principal.is_admin:
        raise Problem(403, "this needs an administrator")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]
