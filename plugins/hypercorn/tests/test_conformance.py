"""The shared backend conformance kit, run against the Hypercorn backend.

Skipped (with the reason shown) until ``launcher.testing.conformance`` exists in the tree.
"""

from __future__ import annotations

import pytest

conformance = pytest.importorskip(
    "launcher.testing.conformance", reason="conformance kit not in the tree yet"
)


class TestConformance(conformance.BackendConformance):  # type: ignore[misc,name-defined]
    backend = "hypercorn"
