"""One run per project folder: a second run fails at once naming the first; a killed run's lock is taken over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tasks.lock import LOCK_NAME, ProjectBusyError, project_lock

HOLD = """
import sys, time
from pathlib import Path
from tasks.lock import project_lock
with project_lock(Path(sys.argv[1]), "dvc repro (test holder)"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(root: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path: Path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(ProjectBusyError) as error, project_lock(tmp_path, "lightweight flow"):
            pass
        message = str(error.value)
        assert f"pid {holder.pid} (dvc repro (test holder)) since {time.strftime('%Y-%m-%d')}" in message
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({}))
        result = CliRunner().invoke(app, ["run", "demo_data", "--root", str(tmp_path)])
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output
        assert not (tmp_path / "data").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_runs_lock_is_taken_over(tmp_path: Path):
    holder = _holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_NAME).read_text()  # the file still names the dead holder
    with project_lock(tmp_path, "after the kill"):
        assert "after the kill" in (tmp_path / LOCK_NAME).read_text()
    with project_lock(tmp_path):  # and it is free again once released
        pass


def _linger(started, seconds: float) -> None:
    started.set()  # after the fork hooks: from here on the child holds no copy of the lock file
    time.sleep(seconds)


def test_a_forked_helper_that_outlives_the_run_does_not_keep_the_folder(tmp_path: Path):
    """As OpenVINO's telemetry does: a multiprocessing fork, started inside the run, still alive after it."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    with project_lock(tmp_path, "the run"):
        helper = fork.Process(target=_linger, args=(started, 60), daemon=True)
        helper.start()
        assert started.wait(60)  # the child runs (a busy machine may schedule it late)
    try:
        assert helper.is_alive()
        with project_lock(tmp_path, "the next run"):  # the helper's copy of the lock file was closed at the fork
            assert "the next run" in (tmp_path / LOCK_NAME).read_text()
    finally:
        helper.kill()
        helper.join()
