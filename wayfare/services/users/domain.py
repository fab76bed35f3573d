"""Account rules: what a good password is, how secrets are kept, who may see whom."""

from __future__ import annotations

import hashlib

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "EmailTaken",
    "InvalidCredentials",
    "InvalidRefreshToken",
    "UserNotFound",
    "can_view",
    "hash_refresh_token",
    "password_weakness",
]

MIN_PASSWORD_LENGTH = 10
# Long enough for any passphrase, short enough that hashing cannot be used to burn CPU.
MAX_PASSWORD_LENGTH = 128
_COMMON = frozenset(
    {
        "password123",
        "passwordpassword",
        "1234567890",
        "12345678910",
        "qwertyuiop",
        "iloveyou123",
        "administrator",
        "letmein1234",
        "welcome1234",
        "0123456789",
    }
)


class EmailTaken(Exception):
    pass


class InvalidCredentials(Exception):
    pass


class InvalidRefreshToken(Exception):
    pass


class UserNotFound(Exception):
    pass


def password_weakness(password: str, email: str = "") -> str | None:
    """Why the password is refused, or None when it is acceptable (NIST 800-63B spirit)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
    if password.lower() in _COMMON or len(set(password)) < 4:
        return "the password is too easy to guess"
    local_part = email.partition("@")[0].lower()
    if local_part and len(local_part) >= 4 and local_part in password.lower():
        return "the password must not contain the email address"
    return None


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are stored only as this digest; the token itself is high-entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def can_view(viewer_id: str, viewer_is_admin: bool, user_id: str) -> bool:
    return viewer_is_admin or viewer_id == user_id
