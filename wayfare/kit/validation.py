"""Input types shared by every service's API schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

__all__ = ["Name", "SafeStr"]


def _no_control_bytes(value: str) -> str:
    # PostgreSQL refuses NUL in text, and control bytes have no place in names or emails.
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise ValueError("control characters are not allowed")
    return value


SafeStr = Annotated[str, AfterValidator(_no_control_bytes)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_bytes),
]
