"""The default backend passes the same conformance kit as any third-party plugin."""

import pytest

from launcher.testing.conformance import BackendConformance

pytestmark = pytest.mark.slow


class TestConformance(BackendConformance):
    backend = "gunicorn"
    # Uvicorn's workers speak HTTP/1.1 only: HTTP2=true is exit 2 (see the README).
    serves_http2 = False
