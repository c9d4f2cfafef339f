"""The Python versions the distributions declare are the ones the project tests.

The launcher's classifiers name each tested version; ``tests/image/test_python_versions.py``
builds an image (and runs the core tests) on each of them, so a version is added or dropped in
one place. Every plugin declares the same, and ``requires-python`` starts at the oldest.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = [REPO / "pyproject.toml", *sorted(REPO.glob("plugins/*/pyproject.toml"))]
VERSION = re.compile(r"Programming Language :: Python :: (3\.\d+)$")


def project(path: Path) -> dict[str, Any]:
    return dict(tomllib.loads(path.read_text())["project"])


def declared_versions() -> list[str]:
    """The minor versions the launcher's classifiers name, oldest first."""
    found = [m.group(1) for c in project(DISTRIBUTIONS[0])["classifiers"] if (m := VERSION.match(c))]
    return sorted(found, key=lambda v: tuple(map(int, v.split("."))))


def test_the_launcher_names_three_versions_at_least() -> None:
    assert declared_versions()[:1] == ["3.11"] and len(declared_versions()) >= 3


def test_every_distribution_declares_the_same_versions() -> None:
    assert len(DISTRIBUTIONS) == 5  # the launcher and four backends
    launcher = project(DISTRIBUTIONS[0])
    for path in DISTRIBUTIONS:
        meta = project(path)
        assert meta["classifiers"] == launcher["classifiers"], path
        assert meta["requires-python"] == f">={declared_versions()[0]}", path
