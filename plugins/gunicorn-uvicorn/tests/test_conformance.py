"""The default backend passes the same conformance kit as any third-party plugin."""

from launcher.testing.conformance import BackendConformance


class TestConformance(BackendConformance):
    backend = "gunicorn"
