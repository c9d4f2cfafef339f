"""The Granian backend passes the conformance kit, as a third-party plugin would run it."""

from launcher.testing.conformance import BackendConformance


class TestConformance(BackendConformance):
    backend = "granian"
