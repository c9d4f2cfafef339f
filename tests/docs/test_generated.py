"""The documentation's tables are generated from the code (launcher.docs); this keeps them in step."""

from __future__ import annotations

import re
from pathlib import Path

from launcher import Backend
from launcher.config.resolve import resolve
from launcher.config.settings import SETTINGS
from launcher.docs import BLOCKS, block_in

REPO = Path(__file__).resolve().parents[2]
#: Where each generated block lives.
HOMES = {
    "env-table": REPO / "docs" / "configuration.md",
    "common-variables": REPO / "README.md",
    "plugin-surface": REPO / "docs" / "plugins.md",
    "kit-attributes": REPO / "docs" / "plugins.md",
}


def test_generated_tables_are_current() -> None:
    assert set(HOMES) == set(BLOCKS)
    for block, make in BLOCKS.items():
        path = HOMES[block]
        assert block_in(path.read_text(), block) == make(), (
            f"{block} is stale: run python -m launcher.docs --write {path.relative_to(REPO)}"
        )


def test_every_variable_and_option_is_documented() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text
        for flag in setting.flags:
            assert f"`{flag.partition('=')[0]}`" in text


def test_the_docs_list_every_config_json_key() -> None:
    """The keys of `config --json` are a documented interface: the command-line page names each."""
    text = " ".join((REPO / "docs" / "command-line.md").read_text().split())
    listed = re.search(
        r"`config --json` prints one object whose keys are a stable interface: `([^`]*)`", text
    )
    assert listed, "the list of config --json keys is gone"
    keys = [k.split(" (")[0].strip() for k in listed[1].split(",")]
    config = resolve({"APP_DIR": str(REPO / "demo")}, Backend, affinity=2)
    assert sorted(keys) == sorted(config.to_dict())
