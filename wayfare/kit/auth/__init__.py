"""Tokens: issued by the users service, verified everywhere else against its JWKS."""

from wayfare.kit.auth.dependency import (
    AdminUser,
    CurrentUser,
    admin_user,
    bearer_token,
    current_user,
    unauthorized,
)
from wayfare.kit.auth.jwks import JwksCache
from wayfare.kit.auth.keys import ALGORITHM, SigningKey, generate_signing_key, jwks_document
from wayfare.kit.auth.tokens import (
    ACCESS_TYP,
    REFRESH_TYP,
    InvalidToken,
    KeyLookup,
    Principal,
    TokenSigner,
    TokenVerifier,
)

__all__ = [
    "ACCESS_TYP",
    "ALGORITHM",
    "REFRESH_TYP",
    "AdminUser",
    "CurrentUser",
    "InvalidToken",
    "JwksCache",
    "KeyLookup",
    "Principal",
    "SigningKey",
    "TokenSigner",
    "TokenVerifier",
    "admin_user",
    "bearer_token",
    "current_user",
    "generate_signing_key",
    "jwks_document",
    "unauthorized",
]
