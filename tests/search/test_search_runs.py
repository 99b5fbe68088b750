"""python -m hpcdist.search end to end: trials against separate training runs, kill and rerun,
failed trials, rank groups, pruning."""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch import ROOT, clean_env, mpiexec, run_mpi

from hpcdist.ckptfile import load_checkpoint

pytestmark = pytest.mark.launcher


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return {"HPCDIST_CACHE": str(tmp_path_factory.mktemp("cache"))}


def search(n, run_dir, *flags, env, timeout=300):
    args = ["-m", "hpcdist.search", "--run-dir", str(run_dir), *map(str, flags)]
    return run_mpi(n, args, timeout, env=env)


def rows(run_dir):
    with open(Path(run_dir) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def params(run_dir):
    newest = sorted((Path(run_dir) / "checkpoints").glob("ckpt-*.h5"))[-1]
    return load_checkpoint(newest).arrays["params"]


def space_file(tmp_path, body, name="space.toml"):
    path = tmp_path / name
    path.write_text(body)
    return path


@contextlib.contextmanager
def two_cores():
    """Jobs started inside run on cores {0, 1} (children inherit the affinity)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0, 1})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def test_builtin_search_at_4_ranks_keeps_the_top_3_and_the_same_seed_repeats_it(tmp_path, cache):
    """Planted bug it catches (besides ranking and repeatability): BLAS threads shared over a
    trial's group instead of the node's 4 ranks (2 threads per rank on 2 cores, not 1)."""
    runs = []
    for name in ("a", "b"):
        with two_cores():
            res = search(4, tmp_path / name, "--seed", 5, env=cache)
        assert res.returncode == 0, res.output[-4000:]
        runs.append(tmp_path / name)
    table = rows(runs[0])
    assert len(table) == 8 and {r["status"] for r in table} == {"ok"}
    # the reference: each trial's own summary.json, ranked here
    accs = {}
    for r in table:
        summary = json.loads((runs[0] / "trials" / r["trial"] / "summary.json").read_text())
        accs[r["trial"]] = summary["final"]["val_accuracy"]
        assert float(r["val_accuracy"]) == summary["final"]["val_accuracy"]
        assert summary["config"]["seed"] == 5 and summary["world_size"] == 1
    want = sorted(accs, key=lambda t: (-accs[t], t))[:3]
    tops = [json.loads((run / "top.json").read_text()) for run in runs]
    assert [e["trial"] for e in tops[0]] == want
    assert tops[0] == tops[1]  # same seed, same 3, same accuracies
    for e in tops[0]:
        assert (runs[0] / e["checkpoint"]).is_file()
    assert (runs[0] / "search.png").stat().st_size > 10_000
    assert "top 3 by val_accuracy" in res.stdout
    # BLAS threads: the node's 2 cores over all 4 ranks of the node (at least 1), not over
    # one trial's group of 1 rank (2)
    assert "device cpu, 1 thread(s) per rank" in res.stdout, res.stdout[-3000:]
    assert "2 thread(s) per rank" not in res.stdout
    # one trial against a separate training run with its settings: bitwise the same model
    best = tops[0][0]
    p = best["params"]
    alone = tmp_path / "alone"
    args = ["-m", "hpcdist.train", "--run-dir", str(alone), "--seed", "5", "--no-progress"]
    args += ["--epochs", "8", "--warmup-epochs", "1", "--lr", str(p["lr"])]
    args += ["--hidden", p["hidden"], "--activation", p["activation"]]
    res = run_mpi(1, args, 120, env=cache)
    assert res.returncode == 0, res.output[-3000:]
    a, b = params(runs[0] / "trials" / best["trial"]), params(alone)
    assert all(a[k].tobytes() == b[k].tobytes() for k in b)


KILL_SPACE = """
[space]
lr = [0.05, 0.1]
hidden = ["32", "64"]
[fixed]
epochs = 40
"""


def _wait_for_kill_point(run_dir, proc, limit=120):
    """Until >= 1 trial ended and an unfinished one has a checkpoint; the ended trials."""
    journal = run_dir / "journal.jsonl"
    start = time.monotonic()
    while time.monotonic() - start < limit:
        assert proc.poll() is None, "the search finished before it could be killed"
        recs = (
            [json.loads(x) for x in journal.read_text().splitlines() if x.endswith("}")]
            if (journal.exists())
            else []
        )
        ended = {r["trial"] for r in recs if r["event"] == "end"}
        started = {r["trial"] for r in recs if r["event"] == "start"} - ended
        # finished checkpoints only: "*.h5" also matched a .tmp-ckpt-*.h5 still being written
        done = "ckpt-*.h5"
        ckpt = [t for t in started if list((run_dir / "trials" / t / "checkpoints").glob(done))]
        if ended and ckpt:
            return ended, ckpt
        time.sleep(0.02)
    raise AssertionError("no kill point reached")


def test_sigkill_midway_then_the_same_command_reruns_nothing_finished(tmp_path, cache):
    space = space_file(tmp_path, KILL_SPACE)
    run = tmp_path / "killed"
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "hpcdist.search", "--space", str(space)]
    proc = subprocess.Popen(
        [*cmd, "--run-dir", str(run)],
        env=clean_env(cache),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ended, interrupted = _wait_for_kill_point(run, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the whole search: mpiexec and every rank
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    ended = {r["trial"] for r in _records(run) if r["event"] == "end"}
    before = {t: _mtimes(run / "trials" / t) for t in ended}
    n_records = len(_records(run))
    res = search(2, run, "--space", space, env=cache)
    assert res.returncode == 0, res.output[-4000:]
    for t, times in before.items():
        assert _mtimes(run / "trials" / t) == times, f"finished trial {t} was touched"
    later = _records(run)[n_records:]
    assert not [r for r in later if r["event"] == "start" and r["trial"] in ended]
    table = rows(run)
    assert len(table) == 4 and {r["status"] for r in table} == {"ok"}
    resumed = [t for t in interrupted if t not in ended]
    assert resumed, "the kill landed after the interrupted trials had ended"
    for t in resumed:
        summary = json.loads((run / "trials" / t / "summary.json").read_text())
        assert summary["resumed_from"], t
    # the reference: the same search never interrupted
    ref = tmp_path / "whole"
    res = search(2, ref, "--space", space, env=cache)
    assert res.returncode == 0, res.output[-4000:]
    got = {r["trial"]: r["val_accuracy"] for r in table}
    assert got == {r["trial"]: r["val_accuracy"] for r in rows(ref)}
    for t in resumed:
        a, b = params(run / "trials" / t), params(ref / "trials" / t)
        assert all(a[k].tobytes() == b[k].tobytes() for k in b), t
    res = search(2, run, "--space", space, "--seed", 1, env=cache)
    assert res.returncode == 2 and "holds another search" in res.stderr, res.output[-2000:]


def _records(run):
    return [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines() if x.strip()]


def _mtimes(d):
    return {str(p): p.stat().st_mtime_ns for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_diverging_trial_is_recorded_failed_and_the_others_finish(tmp_path, cache):
    space = space_file(
        tmp_path, '[space]\nlr = [0.05, 1e6]\nhidden = ["32", "64"]\n[fixed]\nepochs = 2\n'
    )
    run = tmp_path / "s"
    res = search(3, run, "--space", space, "--max-retries", 1, env=cache)
    assert res.returncode == 0, res.output[-4000:]
    table = {r["trial"]: r for r in rows(run)}
    for r in table.values():
        if float(r["lr"]) == 1e6:
            assert r["status"] == "failed" and r["val_accuracy"] == ""
            assert "NonFiniteGradientError" in r["error"] or "diverged" in r["error"], r
        else:
            assert r["status"] == "ok" and float(r["val_accuracy"]) > 0.5 and not r["error"]
    starts = [r["trial"] for r in _records(run) if r["event"] == "start"]
    for t, r in table.items():
        assert starts.count(t) == (2 if r["status"] == "failed" else 1), t  # one retry each
    top = json.loads((run / "top.json").read_text())
    assert sorted(e["trial"] for e in top) == sorted(
        t for t, r in table.items() if r["status"] == "ok"
    )
    assert "failed: " in res.stdout


def test_groups_of_two_ranks_train_as_a_separate_two_rank_job(tmp_path, cache):
    space = space_file(tmp_path, "[space]\nlr = [0.05, 0.1]\n[fixed]\nepochs = 2\nhidden = [32]\n")
    run = tmp_path / "s"
    res = search(2, run, "--space", space, "--ranks-per-trial", 2, env=cache)
    assert res.returncode == 0, res.output[-4000:]
    assert [r["status"] for r in rows(run)] == ["ok", "ok"]
    summary = json.loads((run / "trials" / "t001" / "summary.json").read_text())
    assert summary["world_size"] == 2
    alone = tmp_path / "alone"
    args = ["-m", "hpcdist.train", "--run-dir", str(alone), "--epochs", "2", "--hidden", "32"]
    res = run_mpi(2, [*args, "--lr", "0.1", "--no-progress"], 120, env=cache)
    assert res.returncode == 0, res.output[-3000:]
    a, b = params(run / "trials" / "t001"), params(alone)
    assert all(a[k].tobytes() == b[k].tobytes() for k in b)
    res = search(3, tmp_path / "bad", "--space", space, "--ranks-per-trial", 2, env=cache)
    assert res.returncode != 0 and "does not divide the 3 ranks" in res.output


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_pruning_stops_the_worse_trial_at_its_rung(tmp_path, cache, rule):
    body = "[search]\nstartup_trials = 1\ngrace_period = 1\nreduction_factor = 2\n"
    body += "[space]\nlr = [0.1, 0.001]\n[fixed]\nepochs = 3\nhidden = [32]\n"
    space = space_file(tmp_path, body)
    run = tmp_path / "s"
    res = search(1, run, "--space", space, "--prune", rule, env=cache)
    assert res.returncode == 0, res.output[-4000:]
    table = {r["trial"]: r for r in rows(run)}
    curves = {
        t: [
            json.loads(x)["val_accuracy"]
            for x in (run / "trials" / t / "metrics.jsonl").read_text().splitlines()
        ]
        for t in table
    }
    # t000 runs first and alone (no others: never pruned); t001 meets it at epoch 1
    assert table["t000"]["status"] == "ok" and len(curves["t000"]) == 3
    assert curves["t001"][0] < curves["t000"][0]
    assert table["t001"]["status"] == "pruned" and table["t001"]["epochs"] == "1"
    assert len(curves["t001"]) == 1
    assert (run / "search.png").is_file()
