"""Prestart through real bash: sourced, set -e, exports handed back, CRLF tolerated, user file untouched."""

from __future__ import annotations

import os
import time
from pathlib import Path

from launcher.prestart import run_prestart

BASE_ENV = {"PATH": os.environ["PATH"], "KEEP": "1", "DROP": "x"}


def script(tmp_path: Path, text: str, mode: int = 0o644) -> str:
    path = tmp_path / "prestart.sh"
    path.write_bytes(text.encode())
    path.chmod(mode)
    return str(path)


def test_exports_come_back_without_a_run_bit(tmp_path: Path) -> None:
    status, changes = run_prestart(
        script(tmp_path, "export DEMO_GREETING=hello\nunset DROP\nLOCAL_ONLY=1\n"), BASE_ENV
    )
    assert status == 0
    assert changes == {"DEMO_GREETING": "hello", "DROP": None}


def test_failure_returns_its_status(tmp_path: Path) -> None:
    status, changes = run_prestart(script(tmp_path, "export A=1\nexit 3\n"), BASE_ENV)
    assert (status, changes) == (3, {})


def test_a_failing_command_in_the_middle_stops_it(tmp_path: Path) -> None:
    marker = tmp_path / "after"
    status, _ = run_prestart(script(tmp_path, f"false\ntouch {marker}\n"), BASE_ENV)
    assert status == 1
    assert not marker.exists()


def test_crlf_line_endings_work_and_the_file_is_untouched(tmp_path: Path) -> None:
    text = "export DEMO_X=crlf\r\nif true; then\r\n  export DEMO_Y=ok\r\nfi\r\n"
    path = script(tmp_path, text)
    status, changes = run_prestart(path, BASE_ENV)
    assert status == 0
    assert changes == {"DEMO_X": "crlf", "DEMO_Y": "ok"}
    assert Path(path).read_bytes() == text.encode()


def test_output_is_streamed_not_captured(tmp_path: Path, capfd: object) -> None:
    status, _ = run_prestart(script(tmp_path, "echo to-stdout\necho to-stderr >&2\n"), BASE_ENV)
    out, err = capfd.readouterr()  # type: ignore[attr-defined]
    assert status == 0 and "to-stdout" in out and "to-stderr" in err


def test_a_background_job_does_not_hold_the_launcher(tmp_path: Path) -> None:
    started = time.monotonic()
    status, changes = run_prestart(script(tmp_path, "sleep 8 &\nexport DEMO_BG=1\n"), BASE_ENV)
    assert status == 0 and changes == {"DEMO_BG": "1"}
    assert time.monotonic() - started < 5


def test_values_with_newlines_and_equals(tmp_path: Path) -> None:
    status, changes = run_prestart(script(tmp_path, "export DEMO_M=$'a=b\\nc'\n"), BASE_ENV)
    assert status == 0 and changes == {"DEMO_M": "a=b\nc"}
