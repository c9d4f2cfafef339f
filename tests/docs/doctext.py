"""Read the docs as the tests run them: the fenced code blocks of a Markdown file, each with the
heading it is under, and the prose of a section. The tests take commands, Dockerfiles and apps
from here, never from a copy, so the text a reader follows is the text that is run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[\w+-]*)")


@dataclass(frozen=True)
class Block:
    lang: str  # lower case: "bash", "dockerfile", "python", "text", ""
    text: str
    heading: str  # the nearest heading above it, without its #s


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    heading = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            i += 1
            continue
        indent, marker = len(fence["indent"]), fence["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][indent:])
            i += 1
        found.append(Block(fence["lang"].lower(), "\n".join(body) + "\n", heading))
        i += 1
    return found


def under(path: Path, heading: str, lang: str) -> list[str]:
    """The texts of the ``lang`` blocks under ``heading``, in order (the test fails if none)."""
    texts = [b.text for b in blocks(path) if b.heading == heading and b.lang == lang]
    assert texts, f"{path.name}: no {lang} block under {heading!r} any more"
    return texts


def section(path: Path, heading: str) -> str:
    """The text of the section under ``heading``, up to the next heading, code blocks included."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.S | re.M)
    assert match, f"{path.name}: no section {heading!r} any more"
    return match[1]


def commands(script: str) -> list[str]:
    """The commands of a shell block, one a line, without comments."""
    return [
        line.split(" #", 1)[0].strip()
        for line in script.splitlines()
        if line.strip() and not line.startswith("#")
    ]
