"""The container health check finds the process its service runs, and reports what does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import healthcheck


def _proc(tmp_path: Path, *commands: list[str]) -> Path:
    for pid, argv in enumerate(commands, start=1):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(word.encode() for word in argv) + b"\0")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_running_finds_the_batchery_command(tmp_path: Path) -> None:
    proc = _proc(tmp_path, ["/usr/local/bin/python", "/usr/local/bin/batchery", "dispatcher"], ["sh"])
    assert healthcheck.running("dispatcher", proc)
    assert not healthcheck.running("beat", proc)


def test_a_process_of_another_program_does_not_count(tmp_path: Path) -> None:
    proc = _proc(tmp_path, ["celery", "beat"], ["python", "-m", "cli.main", "dispatcher"])
    assert not healthcheck.running("beat", proc)
    assert healthcheck.running("dispatcher", proc)


def test_main_reports_a_missing_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(healthcheck, "running", lambda process: False)
    assert healthcheck.main(["--process", "dispatcher"]) == 1
    assert "no `batchery dispatcher` process runs" in capsys.readouterr().err
