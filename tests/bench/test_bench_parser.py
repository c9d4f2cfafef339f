"""bench/run.py reads wrk's output correctly (the figures in bench/results.md depend on it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
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
    assert bench.parse_wrk(bench.SAMPLE) == {
        "rps": 10000.0,
        "requests": 30000,
        "p50_ms": 4.9,
        "p99_ms": 10.5,
        "errors": 7,
    }


def test_durations() -> None:
    assert bench._ms("850us") == 0.85
    assert bench._ms("1.5s") == 1500.0
    assert bench._ms("2.00ms") == 2.0


def test_paired_samples_give_the_ratio_and_overheads() -> None:
    def sample(load: str, a: float, b: float) -> dict[str, object]:
        result = {"p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
        a_result = {**result, "rps": a, "cpu_us_per_request": 100.0}
        b_result = {**result, "rps": b, "cpu_us_per_request": 100.0 * b / a}
        return {"load": load, "a": a_result, "b": b_result, "ratio": a / b, "cpu_ratio": a / b}

    def start(ms: float, rss: float, pss: float) -> dict[str, float]:
        return {"startup_ms": ms, "rss_mb": rss, "pss_mb": pss}

    pairs = {
        "gunicorn": {
            "samples": [
                sample("plaintext c64", 970.0, 1000.0),
                sample("plaintext c64", 1100.0, 1000.0),
                sample("json c64", 500.0, 1000.0),  # one bad sample does not move the median
            ],
            "starts": [
                {"a": start(450.0, 95.0, 55.0), "b": start(400.0, 90.0, 50.0)},
                {"a": start(300.0, 94.0, 54.0), "b": start(280.0, 88.0, 51.0)},
            ],
        },
        "hypercorn": {"failed": "direct hypercorn failed to start", "samples": [], "starts": []},
    }
    comparisons = bench.summarize_comparisons(pairs)
    assert comparisons["gunicorn"]["ratio"]["median"] == 0.97
    assert comparisons["gunicorn"]["by_load"]["json c64"]["median"] == 0.5
    assert comparisons["hypercorn"] == {"failed": "direct hypercorn failed to start"}
    low, high = comparisons["gunicorn"]["ratio_ci95"]
    assert 0.5 <= low <= 0.97 <= high <= 1.1  # three samples: a wide interval around the median
    assert comparisons["gunicorn"]["cpu_ratio"]["median"] == 0.97
    t = bench.targets(comparisons)
    assert t["gunicorn"]["throughput_ratio"] == 0.97
    assert t["gunicorn"]["startup_overhead_ms"] == 35.0  # median of the round differences 50 and 20
    assert t["gunicorn"]["memory_overhead_mb"] == 5.5  # RSS: median of 5 and 6
    assert t["gunicorn"]["pss_overhead_mb"] == 4.0  # PSS: median of 5 and 3
    assert t["hypercorn"]["throughput_ratio"] is None
    setups = bench.summarize_setups(pairs)
    assert setups["launcher gunicorn"]["plaintext c64"]["rps"]["median"] == 1035.0
    assert not setups["launcher gunicorn"]["plaintext c64"]["noisy"]  # 1100 / 970 is within 1.2
    assert setups["launcher gunicorn"]["startup_ms"]["median"] == 375.0
    assert setups["direct gunicorn"]["rss_mb"]["median"] == 89.0
    noisy = {"gunicorn": {"samples": [sample("json c64", 800.0, 1000.0), sample("json c64", 1000.0, 1000.0)]}}
    assert bench.summarize_setups(noisy)["launcher gunicorn"]["json c64"]["noisy"]  # 1000 / 800 > 1.2
    assert bench.verdict("throughput_ratio", 0.97) == "PASS" and bench.verdict("config_ms", 151) == "MISS"
    assert bench.verdict("startup_overhead_ms", None) == "not measured"
    line = bench.last_line({"targets": t, "config_ms": {"median": 120.0}})
    assert line.startswith("launcher/direct throughput: gunicorn=0.97 hypercorn=- granian=-")


def test_pinned_setups_run_one_worker_on_the_server_cpu() -> None:
    """--logging and --metrics: each server's tree on SERVER_CPU with one worker; a launcher gets
    MAX_WORKERS=1, not WEB_CONCURRENCY=1 (the Uvicorn backend's single-process mode)."""
    argv, env = bench.SETUPS["launcher uvicorn metrics"].command(8000, pinned=True)
    assert argv[:3] == ["taskset", "-c", bench.SERVER_CPU]
    assert env["MAX_WORKERS"] == "1" and "WEB_CONCURRENCY" not in env
    assert env["BIND"] == "127.0.0.1:8000" and env["OPS_PORT"].isdigit()
    argv, env = bench.SETUPS["launcher gunicorn"].command(8000)
    assert argv[0] != "taskset" and env["WEB_CONCURRENCY"] == bench.WORKERS
    argv, _ = bench.SETUPS["direct granian"].command(8000, pinned=True)
    assert argv[0] == "taskset" and argv[argv.index("--workers") + 1] == "1"
    argv, _ = bench.SETUPS["direct gunicorn"].command(8000)
    assert argv[argv.index("-w") + 1] == bench.WORKERS and "127.0.0.1:8000" in argv
    # Only the two layer-cost modes are pinned, and they sample finely.
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        assert bench.Plan.for_mode(False, 3, metrics=True, reps=5).pinned
    plan = bench.Plan.for_mode(False, 3, logging=True, reps=5, only="JSON")
    assert plan.reps == 5 and plan.comparisons and all("JSON" in c.name for c in plan.comparisons)
    assert not bench.Plan.for_mode(False, 3).pinned and bench.Plan.for_mode(False, 3).reps == 1
