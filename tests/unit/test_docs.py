"""The README's env table is generated from the settings table; this keeps the two in step."""

from __future__ import annotations

from pathlib import Path

from launcher.docs import END, START, env_table
from launcher.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_current() -> None:
    text = README.read_text()
    block = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == env_table(), "README is stale: run python -m launcher.docs --write README.md"


def test_every_variable_is_documented_in_the_readme() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text
