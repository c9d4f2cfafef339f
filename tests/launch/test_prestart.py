"""Prestart through real bash: sourced, set -e, exports handed back, CRLF tolerated, user file untouched.

The environment after prestart is always the one before it plus what the script exported or
unset, however it ends: at its end, at an ``exit``, or replaced by ``exec`` (no changes known).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from launcher.launch.prestart import PrestartResult, run_prestart

BASE_ENV = {"PATH": os.environ["PATH"], "KEEP": "1", "DROP": "x"}


def script(tmp_path: Path, text: str, mode: int = 0o644) -> str:
    path = tmp_path / "prestart.sh"
    path.write_bytes(text.encode())
    path.chmod(mode)
    return str(path)


def test_exports_come_back_without_a_run_bit(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_GREETING=hello\nunset DROP\nLOCAL_ONLY=1\n"), BASE_ENV)
    assert ran == PrestartResult(0, {"DEMO_GREETING": "hello", "DROP": None})


def test_failure_returns_its_status(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export A=1\nexit 3\n"), BASE_ENV)
    assert (ran.status, ran.changes, ran.stopped_by) == (3, {}, None)


def test_a_failing_command_in_the_middle_stops_it(tmp_path: Path) -> None:
    marker = tmp_path / "after"
    assert run_prestart(script(tmp_path, f"false\ntouch {marker}\n"), BASE_ENV).status == 1
    assert not marker.exists()


def test_crlf_line_endings_work_and_the_file_is_untouched(tmp_path: Path) -> None:
    text = "export DEMO_X=crlf\r\nif true; then\r\n  export DEMO_Y=ok\r\nfi\r\n"
    path = script(tmp_path, text)
    assert run_prestart(path, BASE_ENV) == PrestartResult(0, {"DEMO_X": "crlf", "DEMO_Y": "ok"})
    assert Path(path).read_bytes() == text.encode()


def test_output_is_streamed_not_captured(tmp_path: Path, capfd: object) -> None:
    status = run_prestart(script(tmp_path, "echo to-stdout\necho to-stderr >&2\n"), BASE_ENV).status
    out, err = capfd.readouterr()  # type: ignore[attr-defined]
    assert status == 0 and "to-stdout" in out and "to-stderr" in err


def test_a_background_job_does_not_hold_the_launcher(tmp_path: Path) -> None:
    job = tmp_path / "job.pid"
    started = time.monotonic()
    ran = run_prestart(script(tmp_path, f"sleep 120 &\necho $! > {job}\nexport DEMO_BG=1\n"), BASE_ENV)
    took = time.monotonic() - started
    os.kill(int(job.read_text()), signal.SIGKILL)  # (what the test started, it stops)
    assert ran == PrestartResult(0, {"DEMO_BG": "1"})
    assert took < 30  # a deadline: the job alone would hold it for 120 s


def test_values_with_newlines_and_equals(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_M=$'a=b\\nc'\n"), BASE_ENV)
    assert ran == PrestartResult(0, {"DEMO_M": "a=b\nc"})


@pytest.mark.parametrize(
    "text",
    [
        "export DEMO_A=1\nunset DROP\nexit 0\necho never\n",
        "export DEMO_A=1\nunset DROP\nexit\n",  # the status of the last command: 0
        "finish() { exit 0; }\nexport DEMO_A=1\nunset DROP\nif true; then finish; fi\nexport DEMO_B=no\n",
        "export DEMO_A=1\nunset DROP\n(exit 4) || true\nexit 0\n",
    ],
    ids=["exit-0", "bare-exit", "exit-in-a-function", "exit-in-a-subshell-then-exit-0"],
)
def test_an_exit_keeps_what_was_exported_until_then_and_the_rest(tmp_path: Path, text: str) -> None:
    ran = run_prestart(script(tmp_path, text), BASE_ENV)
    assert ran == PrestartResult(0, {"DEMO_A": "1", "DROP": None})  # KEEP and PATH untouched


def test_exit_in_a_crlf_script_keeps_its_exports(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_A=crlf\r\nexit 0\r\n"), BASE_ENV)
    assert ran == PrestartResult(0, {"DEMO_A": "crlf"})


def test_exec_means_no_changes_never_everything_unset(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_A=1\nunset DROP\nexec true\n"), BASE_ENV)
    assert ran == PrestartResult(0, {}, handed_back=False)
    assert run_prestart(script(tmp_path, "exec false\n"), BASE_ENV).status == 1


def test_exec_with_only_redirections_does_not_end_it(tmp_path: Path) -> None:
    log = tmp_path / "prestart.log"
    ran = run_prestart(script(tmp_path, f"exec >{log} 2>&1\necho logged\nexport DEMO_A=1\n"), BASE_ENV)
    assert ran == PrestartResult(0, {"DEMO_A": "1"})
    assert log.read_text() == "logged\n"


def test_a_script_with_its_own_exit_trap_still_hands_back(tmp_path: Path, capfd: object) -> None:
    ran = run_prestart(script(tmp_path, "trap 'echo own-trap' EXIT\nexport DEMO_A=1\n"), BASE_ENV)
    assert ran == PrestartResult(0, {"DEMO_A": "1"})
    assert "own-trap" in capfd.readouterr()[0]  # type: ignore[attr-defined]


def test_a_script_that_replaces_path_still_hands_back(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export PATH=/nonexistent\nexport DEMO_A=1\nexit 0\n"), BASE_ENV)
    assert ran == PrestartResult(0, {"PATH": "/nonexistent", "DEMO_A": "1"})


def test_a_dump_larger_than_the_pipe_buffer(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_BIG=$(printf '%0200000d' 0)\nexit 0\n"), BASE_ENV)
    assert ran.status == 0 and ran.changes == {"DEMO_BIG": "0" * 200000}


def test_names_that_are_not_identifiers_are_never_taken_as_unset(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_A=1\n"), {**BASE_ENV, "odd.name": "1", "a-b": "2"})
    assert ran == PrestartResult(0, {"DEMO_A": "1"})


def test_a_set_e_failure_after_exports_changes_nothing(tmp_path: Path) -> None:
    ran = run_prestart(script(tmp_path, "export DEMO_A=1\nfalse\n"), BASE_ENV)
    assert (ran.status, ran.changes) == (1, {})


def _json_lines(text: str) -> list[dict[str, object]]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_wrap_each_line_on_its_own_stream(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    body = 'echo "to out"\necho "to err" >&2\necho "é ünïcode"\nprintf "no newline at the end"\nexport A=1\n'
    ran = run_prestart(script(tmp_path, body), BASE_ENV, json_lines=True)
    assert ran == PrestartResult(0, {"A": "1"})
    out, err = capfd.readouterr()
    stdout, stderr = _json_lines(out), _json_lines(err)
    assert [e["message"] for e in stdout] == ["to out", "é ünïcode", "no newline at the end"]
    assert [e["message"] for e in stderr] == ["to err"]
    for entry in stdout + stderr:
        assert (entry["log.logger"], entry["log.level"]) == ("prestart", "info")
        assert isinstance(entry["process.pid"], int) and str(entry["@timestamp"]).endswith("Z")


def test_json_lines_of_a_background_job_still_arrive_after_the_script(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ran = run_prestart(script(tmp_path, "( sleep 0.5; echo later ) &\necho now\n"), BASE_ENV, json_lines=True)
    assert ran.status == 0
    deadline = time.monotonic() + 5
    seen = ""
    while "later" not in seen and time.monotonic() < deadline:
        time.sleep(0.1)
        seen += capfd.readouterr().out
    assert [e["message"] for e in _json_lines(seen)] == ["now", "later"]


def test_without_json_lines_the_output_streams_straight_through(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run_prestart(script(tmp_path, "echo plain\n"), BASE_ENV)
    assert capfd.readouterr().out == "plain\n"
