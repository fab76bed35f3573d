"""Input types shared by every service's API schemas."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

__all__ = ["Name", "SafeStr"]


# Unicode's control characters (C0, DEL, C1), tab and line breaks excepted.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _no_control_bytes(value: str) -> str:
    # PostgreSQL refuses NUL in text, and control bytes (C1's CSI is a terminal escape
    # too) have no place in names or emails.
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


def _one_line(value: str) -> str:
    # A name is shown on one line in lists, notifications and logs.
    if any(ch in value for ch in "\t\n\r"):
        raise ValueError("a name is one line of text")
    return value


SafeStr = Annotated[str, AfterValidator(_no_control_bytes)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_bytes),
    AfterValidator(_one_line),
]
