"""The shared backend conformance kit, run against the Hypercorn backend."""

import pytest

from launcher.testing.conformance import BackendConformance

pytestmark = pytest.mark.slow


class TestConformance(BackendConformance):
    backend = "hypercorn"
    # Spawned workers bring multiprocessing's resource tracker: one small helper process.
    extra_processes = 1
