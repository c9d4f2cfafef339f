"""The README's env table is generated from the settings table; this keeps the two in step."""

from __future__ import annotations

import re
from pathlib import Path

from launcher import Backend
from launcher.config.resolve import resolve
from launcher.config.settings import SETTINGS
from launcher.docs import BLOCKS, block_in

README = Path(__file__).resolve().parents[2] / "README.md"


def test_generated_tables_are_current() -> None:
    text = README.read_text()
    for block, make in BLOCKS.items():
        assert block_in(text, block) == make(), (
            f"{block} is stale: run python -m launcher.docs --write README.md"
        )


def test_every_variable_is_documented_in_the_readme() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text


def test_readme_lists_every_config_json_key() -> None:
    """The keys of `config --json` are a documented interface: the README names each one."""
    text = " ".join(README.read_text().split())
    listed = re.search(
        r"`config --json` prints one object whose keys are a stable interface: `([^`]*)`", text
    )
    assert listed, "the README's list of config --json keys is gone"
    keys = [k.split(" (")[0].strip() for k in listed[1].split(",")]
    config = resolve({"APP_DIR": str(README.parent / "demo")}, Backend, affinity=2)
    assert sorted(keys) == sorted(config.to_dict())
