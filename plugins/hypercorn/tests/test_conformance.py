"""The shared backend conformance kit, run against the Hypercorn backend."""

from launcher.testing.conformance import BackendConformance


class TestConformance(BackendConformance):
    backend = "hypercorn"
