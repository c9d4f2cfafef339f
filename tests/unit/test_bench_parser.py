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


def test_paired_samples_give_the_ratio_and_overheads() -> None:
    def sample(load: str, a: float, b: float) -> dict[str, object]:
        result = {"p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
        return {"load": load, "a": {**result, "rps": a}, "b": {**result, "rps": b}, "ratio": a / b}

    pairs = {
        "gunicorn": {
            "samples": [
                sample("plaintext c64", 970.0, 1000.0),
                sample("plaintext c64", 1100.0, 1000.0),
                sample("json c64", 500.0, 1000.0),  # one bad sample does not move the median
            ]
        },
        "hypercorn": {"failed": "direct hypercorn failed to start"},
    }
    startup = {
        "launcher gunicorn": [
            {"startup_ms": 450.0, "rss_mb": 95.0, "pss_mb": 55.0},
            {"startup_ms": 300.0, "rss_mb": 94.0, "pss_mb": 54.0},
        ],
        "direct gunicorn": [
            {"startup_ms": 400.0, "rss_mb": 90.0, "pss_mb": 50.0},
            {"startup_ms": 280.0, "rss_mb": 88.0, "pss_mb": 51.0},
        ],
    }
    comparisons = bench.summarize_comparisons(pairs)
    assert comparisons["gunicorn"]["ratio"]["median"] == 0.97
    assert comparisons["gunicorn"]["by_load"]["json c64"]["median"] == 0.5
    assert comparisons["hypercorn"] == {"failed": "direct hypercorn failed to start"}
    t = bench.targets(comparisons, startup)["gunicorn"]
    assert t["throughput_ratio"] == 0.97
    assert t["startup_overhead_ms"] == 35.0  # median of the paired differences 50 and 20
    assert t["memory_overhead_mb"] == 5.5  # RSS: median of 5 and 6
    assert t["pss_overhead_mb"] == 4.0  # PSS: median of 5 and 3
    setups = bench.summarize_setups(pairs, startup)
    assert setups["launcher gunicorn"]["plaintext c64"]["rps"]["median"] == 1035.0
    assert not setups["launcher gunicorn"]["plaintext c64"]["noisy"]  # 1100 / 970 is within 1.2
    assert setups["launcher gunicorn"]["startup_ms"]["median"] == 375.0
    noisy = {"gunicorn": {"samples": [sample("json c64", 800.0, 1000.0), sample("json c64", 1000.0, 1000.0)]}}
    assert bench.summarize_setups(noisy, {})["launcher gunicorn"]["json c64"]["noisy"]  # 1000 / 800 > 1.2
    assert bench.verdict("throughput_ratio", 0.97) == "PASS" and bench.verdict("config_ms", 151) == "MISS"
    assert bench.verdict("startup_overhead_ms", None) == "not measured"
    assert "0.97" in bench.last_line(
        {"targets": bench.targets(comparisons, startup), "config_ms": {"median": 120.0}}
    )
