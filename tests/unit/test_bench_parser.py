"""bench/run.py reads wrk's output correctly (the figures in bench/results.md depend on it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "bench_run", Path(__file__).resolve().parents[2] / "bench" / "run.py"
)
assert spec and spec.loader
bench = importlib.util.module_from_spec(spec)
sys.modules["bench_run"] = bench  # dataclasses look their module up there
spec.loader.exec_module(bench)


def test_parse_wrk_sample() -> None:
    assert bench.parse_wrk(bench.SAMPLE) == {"rps": 10000.0, "p50_ms": 4.9, "p99_ms": 10.5, "errors": 7}


def test_durations() -> None:
    assert bench._ms("850us") == 0.85
    assert bench._ms("1.5s") == 1500.0
    assert bench._ms("2.00ms") == 2.0


def test_ratios_and_verdicts() -> None:
    summary = {
        "launcher gunicorn": {
            "plaintext_64": {"rps": {"median": 970.0}},
            "startup_ms": {"median": 450.0},
            "pss_mb": {"median": 55.0},
        },
        "direct gunicorn": {
            "plaintext_64": {"rps": {"median": 1000.0}},
            "startup_ms": {"median": 400.0},
            "pss_mb": {"median": 50.0},
        },
    }
    r = bench.ratios(summary)["gunicorn"]
    assert round(r["throughput_ratio"], 2) == 0.97 and r["startup_overhead_ms"] == 50.0
    assert bench.verdict("throughput_ratio", 0.97) == "PASS" and bench.verdict("config_ms", 151) == "MISS"
