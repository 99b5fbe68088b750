"""Progress: a bar on a terminal (also behind mpirun), lines with elapsed time and ETA elsewhere."""

import io
import json
import re
import shutil
import subprocess

import pytest
from launch import ROOT, clean_env, mpiexec

from hpcdist import progress
from hpcdist.progress import Progress


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("HPCDIST_PROGRESS", raising=False)


def test_lines_every_interval_with_eta_and_a_last_line(monkeypatch):
    out, clock = io.StringIO(), [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = Progress(100, "epoch 3/40", stream=out, every_s=30.0)
    for i in range(100):
        clock[0] += 1.0
        bar.update(1, **{"train loss so far (rank 0)": 1.0 / (i + 1)})
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "epoch 3/40: 30/100 steps (30%), 30.0 s, ETA 1m10s, train loss so far (rank 0) 0.03333",
        "epoch 3/40: 60/100 steps (60%), 1m00s, ETA 40.0 s, train loss so far (rank 0) 0.01667",
        "epoch 3/40: 90/100 steps (90%), 1m30s, ETA 10.0 s, train loss so far (rank 0) 0.01111",
        "epoch 3/40: 100/100 steps (100%), 1m40s, train loss so far (rank 0) 0.01",
    ]


def test_a_short_epoch_is_one_line_and_off_is_silent():
    out = io.StringIO()
    with Progress(50, "epoch 1/2", stream=out) as bar:
        bar.update(50)
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("epoch 1/2: 50/50")
    quiet = io.StringIO()
    with Progress(50, stream=quiet, enabled=False) as bar:
        bar.update(50)
    with Progress(50, stream=quiet, mode="off") as bar:
        bar.update(50)
    assert quiet.getvalue() == ""


def test_the_environment_forces_a_mode_and_bad_modes_are_named(monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setenv("HPCDIST_PROGRESS", "bar")
    out = io.StringIO()
    with Progress(20, "train", stream=out) as bar:
        assert bar.mode == "bar"
        bar.update(20)
    assert "\r" in out.getvalue() and "20/20" in out.getvalue()
    monkeypatch.setenv("HPCDIST_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="progress mode must be one of"):
        Progress(1)


def test_a_pipe_is_not_a_terminal():
    assert progress.choose_mode("auto", io.StringIO()) in ("lines", "bar")  # bar only under a tty
    code = "from hpcdist import progress; print(progress.choose_mode())"
    res = subprocess.run(
        ["python", "-c", code], capture_output=True, text=True, env=clean_env(), cwd=ROOT
    )
    assert res.stdout.strip() == "lines"


TRAIN = ["-m", "hpcdist.train", "--epochs", "2", "--hidden", "16", "--checkpoint-every", "0"]


def _train(tmp_path, on_a_terminal: bool) -> str:
    """The job's output, bytes as written (carriage returns kept), run under `script` (a
    pseudo-terminal, as an interactive shell gives mpirun) or into a pipe."""
    cmd = [mpiexec(), "-n", "2", "python", *TRAIN, "--run-dir", str(tmp_path / "run")]
    if on_a_terminal:
        cmd = ["script", "-qec", " ".join(cmd), "/dev/null"]
    env = clean_env({"HPCDIST_CACHE": str(tmp_path / "cache")})
    res = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, timeout=240)
    out = res.stdout.decode(errors="replace")
    assert res.returncode == 0, out[-3000:] + res.stderr.decode(errors="replace")[-3000:]
    return out


@pytest.mark.launcher
def test_redirected_to_a_file_one_line_per_epoch(tmp_path):
    out = _train(tmp_path, on_a_terminal=False)
    assert "\r" not in out
    lines = [ln for ln in out.splitlines() if re.match(r"epoch \d+/2: ", ln)]
    assert [ln.split(":")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"], out
    steps = json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] // 2
    assert all(f" {steps}/{steps} steps (100%)" in ln for ln in lines)


@pytest.mark.launcher
@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux's script")
def test_a_bar_is_drawn_when_mpirun_runs_on_a_terminal(tmp_path):
    pytest.importorskip("tqdm")
    out = _train(tmp_path, on_a_terminal=True)
    assert "\r" in out and re.search(r"epoch 1/2: +\d+%\|", out), out[-2000:]
