"""Figures the reliability tests measure are printed at the end of the run (and kept in CI logs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import BACKENDS, backend_skip_reason

FIGURES: list[str] = []
_usable: dict[str, str | None] = {}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name not in _usable:
        _usable[name] = backend_skip_reason(name)
    if _usable[name]:
        pytest.skip(_usable[name])
    return name


@pytest.fixture
def figures() -> list[str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
