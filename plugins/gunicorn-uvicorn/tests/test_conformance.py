"""The default backend passes the same conformance kit as any third-party plugin."""

import pytest

from launcher.testing.conformance import BackendConformance

pytestmark = pytest.mark.slow


class TestConformance(BackendConformance):
    backend = "gunicorn"
