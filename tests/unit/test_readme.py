"""The README's configuration table names every setting there is, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from wayfare.kit.settings import Settings

README = Path(__file__).parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    table = {
        match.group(1)
        for match in re.finditer(r"^\| `(WAYFARE_[A-Z_]+)` \|", README.read_text(), re.M)
    }
    settings = {f"WAYFARE_{name.upper()}" for name in Settings.model_fields}
    assert settings - table == set(), "settings missing from the README"
    assert table - settings == set(), "the README documents settings that do not exist"
