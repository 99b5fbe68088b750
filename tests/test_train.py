"""The main job end to end: accuracy, determinism, exact resume after SIGTERM, bad checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch import ROOT, clean_env, mpiexec, run_mpi

from hpcdist.checkpoint import load_checkpoint

pytestmark = pytest.mark.launcher

FAST = ["--epochs", "3", "--hidden", "32", "--no-progress"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One digits cache for the module's runs (built by the first run's rank 0)."""
    return {"HPCDIST_CACHE": str(tmp_path_factory.mktemp("cache"))}


def train(n, run_dir, *flags, env, timeout=120):
    res = run_mpi(n, ["-m", "hpcdist.train", "--run-dir", str(run_dir), *flags], timeout, env=env)
    return res


def epochs_and_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, train loss) of every line of metrics.jsonl, in file order."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["epoch"], r["train_loss"]) for r in map(json.loads, lines)]


def final_params(run_dir: Path) -> dict:
    newest = sorted((run_dir / "checkpoints").glob("ckpt-*.h5"))[-1]
    return load_checkpoint(newest).arrays["params"]


@pytest.mark.parametrize("n", [1, 3, 8])
def test_default_job_reaches_097(n, tmp_path, cache):
    res = train(n, tmp_path, "--no-progress", env=cache, timeout=180)
    assert res.returncode == 0, res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"]["val_accuracy"] >= 0.97, summary["final"]
    assert summary["final"]["val_count"] == 359  # the whole validation set, once
    assert summary["world_size"] == n and summary["status"] == "finished"
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == summary["config"]["epochs"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "validation accuracy" in res.stdout


@pytest.mark.parametrize("n", [2, 3])
def test_deterministic_runs_are_bitwise_equal(tmp_path, cache, n):
    """Planted bug it catches: a result that depends on the ranks' timing (a sum in arrival
    order), which one world size can hide; so at 2 ranks and at 3 (nodes' slices uneven)."""
    for name in ("a", "b"):
        res = train(n, tmp_path / name, *FAST, env=cache)
        assert res.returncode == 0, res.output
    a, b = final_params(tmp_path / "a"), final_params(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key


def _start(n, run_dir, flags, env):
    cmd = [
        mpiexec(),
        "-n",
        str(n),
        sys.executable,
        "-m",
        "hpcdist.train",
        "--run-dir",
        str(run_dir),
    ]
    return subprocess.Popen(
        cmd + flags,
        cwd=ROOT,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("n", [2, 3])
def test_sigterm_then_resume_equals_uninterrupted(tmp_path, cache, n):
    """Planted bug it catches: a resume that restores one rank's state (data cursor, partial
    sums) on every rank, or one that holds at one world size only; so at 2 and 3 ranks."""
    flags = [*FAST, "--epochs", "4"]
    full = train(n, tmp_path / "full", *flags, env=cache)
    assert full.returncode == 0, full.output
    run = tmp_path / "cut"
    proc = _start(n, run, flags, cache)
    try:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 1:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)  # like scancel: every process of the job
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "pre-empted by SIGTERM" in out, out
    assert len(metrics.read_text().splitlines()) < 4  # it really stopped early
    resumed = train(n, run, *flags, "--resume", env=cache)
    assert resumed.returncode == 0, resumed.output
    assert "resumed from" in resumed.stdout
    a, b = final_params(tmp_path / "full"), final_params(run)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    full_acc = json.loads((tmp_path / "full" / "summary.json").read_text())["final"]
    cut_acc = json.loads((run / "summary.json").read_text())["final"]
    assert full_acc["val_loss"] == cut_acc["val_loss"]
    # Each epoch once, and the epoch cut in the middle reports the uninterrupted train loss
    # (every rank's partial sums were checkpointed, not only rank 0's).
    assert epochs_and_losses(run) == epochs_and_losses(tmp_path / "full")


def test_sigkill_then_resume_logs_each_epoch_once(tmp_path, cache):
    flags = [*FAST, "--epochs", "4"]
    full = train(2, tmp_path / "full", *flags, env=cache)
    assert full.returncode == 0, full.output
    run = tmp_path / "cut"
    proc = _start(2, run, flags, cache)
    try:
        deadline = time.monotonic() + 120
        ckpts = run / "checkpoints"
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(ckpts.glob("ckpt-*.h5"))) >= 2:  # killed in epoch 3 (or later)
                break
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    resumed = train(2, run, *flags, "--resume", env=cache)
    assert resumed.returncode == 0, resumed.output
    assert epochs_and_losses(run) == epochs_and_losses(tmp_path / "full")


@pytest.mark.parametrize("n", [2, 3])
def test_truncated_checkpoint_is_refused_and_previous_used(tmp_path, cache, n):
    """Planted bug it catches: a fallback that only the rank reading the bad file takes
    (the others resume from the newest), which one world size of 2 can hide."""
    res = train(n, tmp_path, *FAST, env=cache)
    assert res.returncode == 0, res.output
    files = sorted((tmp_path / "checkpoints").glob("ckpt-*.h5"))
    assert len(files) == 3
    newest = files[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    before = epochs_and_losses(tmp_path)
    res = train(n, tmp_path, *FAST, "--resume", env=cache)
    assert res.returncode == 0, res.output
    assert f"refused checkpoint {newest}" in res.stderr
    assert f"resumed from {files[-2]}" in res.stdout
    # metrics.jsonl went back to the restored epoch: the replayed epoch is there once, equal
    assert epochs_and_losses(tmp_path) == before


def test_mismatched_checkpoints_are_refused(tmp_path, cache):
    res = train(2, tmp_path, *FAST, env=cache)
    assert res.returncode == 0, res.output
    other_model = train(2, tmp_path, *FAST, "--hidden", "16", "--resume", env=cache)
    assert other_model.returncode != 0
    assert "does not match the model" in other_model.stderr
    other_world = train(3, tmp_path, *FAST, "--resume", env=cache)
    assert other_world.returncode != 0
    assert "written by 2 ranks, this job has 3" in other_world.stderr


def test_resume_refuses_other_data_and_applies_new_optimizer_settings(tmp_path, cache):
    small = ["--synthetic-features", "16", "--epochs", "1", "--hidden", "8", "--no-progress"]
    res = train(2, tmp_path, "--synthetic", "700", *small, env=cache)
    assert res.returncode == 0, res.output
    other = train(2, tmp_path, "--synthetic", "900", *small, "--resume", env=cache)
    assert other.returncode != 0
    assert "was written for other data" in other.stderr, other.stderr[-3000:]
    more = [*small[:-3], "--epochs", "2", "--hidden", "8", "--no-progress"]
    changed = train(2, tmp_path, "--synthetic", "700", *more, "--momentum", "0.5", "--resume",
                    env=cache)  # fmt: skip
    assert changed.returncode == 0, changed.output
    assert "changed optimizer settings (momentum 0.9 -> 0.5)" in changed.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["changed_on_resume"] == {"momentum": {"checkpoint": 0.9, "now": 0.5}}
    assert summary["config"]["momentum"] == 0.5


def test_bad_config_is_named(tmp_path, cache):
    toml = tmp_path / "run.toml"
    toml.write_text("[train]\nepochs = 2\nlearning_rate = 0.1\n")
    res = train(2, tmp_path / "run", "--config", str(toml), env=cache, timeout=60)
    assert res.returncode == 2
    assert "unknown setting(s) ['learning_rate']" in res.stderr
    assert res.seconds < 20


def test_timeline_has_every_phase(tmp_path, cache):
    res = train(2, tmp_path, *FAST, "--epochs", "1", "--timeline", env=cache)
    assert res.returncode == 0, res.output
    merged = json.loads((tmp_path / "timeline.json").read_text())["traceEvents"]
    spans = {(e["pid"], e["name"]) for e in merged if e.get("ph") == "X"}
    for rank in (0, 1):
        for phase in ("data_wait", "forward", "backward", "exchange", "optimizer"):
            assert (rank, phase) in spans
    assert (tmp_path / "timeline-rank1.json").exists()


#: hpcdist.train with an error planted on rank 1 alone, inside fit (the others go on to train).
ONE_RANK_RAISES = """
import sys
from mpi4py import MPI
from hpcdist import report, train

if MPI.COMM_WORLD.rank == 1:
    def announce(trainer):
        raise RuntimeError("the planted error on rank 1")
    report.announce = announce
raise SystemExit(train.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("n", [2, 3])
def test_an_error_on_one_rank_inside_fit_reaches_the_user_at_once(tmp_path, cache, n):
    """Planted bug it catches: Trainer.__exit__ freeing the exchange's windows (a collective)
    while an error propagates on one rank: that rank waited there for the others until the
    deadline (--timeout 120) and the error was never printed."""
    script = tmp_path / "raises.py"
    script.write_text(ONE_RANK_RAISES)
    args = [str(script), "--run-dir", str(tmp_path / "run"), "--synthetic", "600"]
    args += ["--synthetic-features", "16", "--hidden", "8", "--no-progress", "--timeout", "120"]
    res = run_mpi(n, args, timeout=90, env=cache)
    assert res.returncode != 0, res.output[-3000:]
    assert res.seconds < 40, (res.seconds, res.output[-3000:])
    assert "rank 1 of" in res.output and "the planted error on rank 1" in res.output


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
@pytest.mark.parametrize("n", [2, 3])
def test_a_run_dir_another_user_may_plant_links_in_is_refused_on_every_rank(tmp_path, cache, n):
    """Planted bugs it catches: the check made only where rank 0 opens its metrics log (the
    refusal was lost at 2 ranks: the job timed out closing the exchange), or made after the
    earlier run's outputs were removed (they were, with an '--overwrite' message)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "summary.json").write_text('{"an": "earlier run"}')
    os.chown(shared, 4321, 4321)
    shared.chmod(0o777)
    small = ["--synthetic", "600", "--synthetic-features", "16", "--hidden", "8", "--no-progress"]
    res = train(n, shared, *small, "--timeout", "120", env=cache, timeout=90)
    assert res.returncode == 2, res.output[-3000:]
    assert res.seconds < 40, res.seconds
    for r in range(n):
        assert f"(rank {r} of {n}): run directory {shared} belongs to uid 4321" in res.stderr
    assert "removed" not in res.output
    assert (shared / "summary.json").read_text() == '{"an": "earlier run"}'
