"""Tracing in the worker pipeline: no layer and nothing of OpenTelemetry imported when it is off;
the layer after the proxy headers and around the access log when it is on. Each build runs in a
fresh interpreter: a worker's set-up sets the process's global tracer provider."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BUILD = """
import json, sys
from launcher import Backend
from launcher.config.resolve import resolve
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.pipeline import build

async def app(scope, receive, send):
    pass

config = resolve({"APP_DIR": sys.argv[1], **json.loads(sys.argv[2])}, Backend)
built = build(WorkerContext(config, None, None), retire=lambda: None, app=app)
print(json.dumps({"layers": built.layers, "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def built(tmp_path: Path, **env: str) -> dict[str, list[str]]:
    (tmp_path / "main.py").write_text("app = None\n")
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path), json.dumps(env)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.splitlines()[-1]))


def test_tracing_off_adds_no_layer_and_imports_nothing(tmp_path: Path) -> None:
    off = built(tmp_path, OTEL_SERVICE_NAME="shop")
    assert "tracing" not in off["layers"] and off["otel"] == [], off
    disabled = built(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", OTEL_SDK_DISABLED="true")
    assert "tracing" not in disabled["layers"] and disabled["otel"] == [], disabled


def test_tracing_on_is_a_layer_after_the_proxy_headers_around_the_access_log(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace", reason="pip install 'asgi-launcher[otel]'")
    on = built(tmp_path, OTEL_TRACES_EXPORTER="console")
    layers = on["layers"]
    assert layers.index("proxy-headers") + 1 == layers.index("tracing") == layers.index("access-log") - 1, (
        layers
    )
