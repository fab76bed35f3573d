"""HTTP routes of the users service: parse, call a use case, map refusals to statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from wayfare.kit.auth import CurrentUser, jwks_document
from wayfare.kit.problems import Problem
from wayfare.kit.validation import Name, SafeStr
from wayfare.services.users import handlers, keyring
from wayfare.services.users.domain import (
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    UserNotFound,
    password_weakness,
)
from wayfare.services.users.store import Account

__all__ = ["router"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class RegisterIn(_Strict):
    email: EmailStr = Field(max_length=254)
    password: SafeStr
    name: Name

    @model_validator(mode="after")
    def _strong_password(self) -> RegisterIn:
        weakness = password_weakness(self.password, str(self.email))
        if weakness:
            raise ValueError(weakness)
        return self


class LoginIn(_Strict):
    email: Annotated[str, Field(max_length=254)]
    password: Annotated[str, Field(max_length=1024)]


class RefreshIn(_Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class RenameIn(_Strict):
    name: Name


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, account: Account) -> UserOut:
        return cls(
            id=account.id,
            email=account.email,
            name=account.name,
            role=account.role,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


def accounts(request: Request) -> handlers.Accounts:
    ctx: handlers.Accounts = request.app.state.accounts
    return ctx


AccountsDep = Annotated[handlers.Accounts, Depends(accounts)]

router = APIRouter()
_BAD_LOGIN = Problem(
    401, "the email or password is wrong", headers={"WWW-Authenticate": 'Bearer realm="wayfare"'}
)


def _tokens_out(pair: handlers.TokenPair) -> TokensOut:
    return TokensOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


@router.post("/auth/register", status_code=201, response_model=UserOut, tags=["auth"])
async def register(body: RegisterIn, ctx: AccountsDep, response: Response) -> UserOut:
    try:
        account = await handlers.register(
            ctx, email=str(body.email), password=body.password, name=body.name
        )
    except EmailTaken as exc:
        raise Problem(409, "an account with this email exists") from exc
    response.headers["Location"] = f"/users/{account.id}"
    return UserOut.of(account)


@router.post("/auth/login", response_model=TokensOut, tags=["auth"])
async def login(body: LoginIn, ctx: AccountsDep) -> TokensOut:
    try:
        return _tokens_out(await handlers.login(ctx, email=body.email, password=body.password))
    except InvalidCredentials as exc:
        raise _BAD_LOGIN from exc


@router.post("/auth/refresh", response_model=TokensOut, tags=["auth"])
async def refresh(body: RefreshIn, ctx: AccountsDep) -> TokensOut:
    try:
        return _tokens_out(await handlers.refresh(ctx, refresh_token=body.refresh_token))
    except InvalidRefreshToken as exc:
        raise Problem(401, "the refresh token is invalid, expired or revoked") from exc


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(body: RefreshIn, ctx: AccountsDep) -> Response:
    try:
        await handlers.logout(ctx, refresh_token=body.refresh_token)
    except InvalidRefreshToken as exc:
        raise Problem(401, "the refresh token is invalid, expired or revoked") from exc
    return Response(status_code=204)


@router.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(ctx: AccountsDep, response: Response) -> dict[str, Any]:
    async with ctx.uow.begin() as session:
        keys = await keyring.published_jwks(session, access_ttl=ctx.access_ttl)
    response.headers["Cache-Control"] = "public, max-age=60"
    return jwks_document(keys)


@router.get("/users/me", response_model=UserOut, tags=["users"])
async def me(user: CurrentUser, ctx: AccountsDep) -> UserOut:
    return await get_user(user.user_id, user, ctx)


@router.patch("/users/me", response_model=UserOut, tags=["users"])
async def rename(body: RenameIn, user: CurrentUser, ctx: AccountsDep) -> UserOut:
    try:
        return UserOut.of(await handlers.rename(ctx, user_id=user.user_id, name=body.name))
    except UserNotFound as exc:
        raise Problem(404, "no such user") from exc


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
async def get_user(user_id: str, user: CurrentUser, ctx: AccountsDep) -> UserOut:
    try:
        account = await handlers.get_user(
            ctx, user_id=user_id, viewer_id=user.user_id, viewer_is_admin=user.is_admin
        )
    except UserNotFound as exc:
        raise Problem(404, "no such user") from exc
    return UserOut.of(account)
