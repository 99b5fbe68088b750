"""Every example runs and says what it should."""

import re

import pytest
from launch import ROOT, run_mpi

pytestmark = pytest.mark.launcher


def test_placement_example():
    res = run_mpi(4, ["examples/placement.py"], timeout=60)
    assert res.returncode == 0, res.output
    assert "ps job has 1 task(s) on ranks [0]" in res.stdout
    assert "worker job has 3 task(s) on ranks [1, 2, 3]" in res.stdout


def test_queues_example():
    res = run_mpi(1, ["examples/queues.py"], timeout=60)
    assert res.returncode == 0, res.output
    assert "50 records, each once: True" in res.stdout


def test_allreduce_example():
    res = run_mpi(3, ["examples/allreduce.py"], timeout=60)
    assert res.returncode == 0, res.output
    errors = {ln.split()[1].rstrip(":"): float(ln.split()[-1]) for ln in res.stdout.splitlines()}
    assert errors["none"] < 1e-6 and errors["fp16"] < 2e-3 and errors["bf16"] < 1.6e-2


def test_custom_loop_example(tmp_path):
    res = run_mpi(2, ["examples/custom_loop.py"], timeout=120, env={"HPCDIST_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.output
    losses = [float(ln.split()[-1]) for ln in res.stdout.splitlines() if ln.startswith("epoch")]
    assert len(losses) == 5 and losses[-1] < losses[0] / 3


@pytest.mark.parametrize("mode", ["sync", "backup", "async"])
def test_parameter_server_example(mode, tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    res = run_mpi(4, [f"{ROOT}/examples/parameter_server.py", mode], 240, env, cwd=tmp_path)
    assert res.returncode == 0, res.output[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(f"{mode}: 3 workers"))
    m = re.search(r"accuracy ([\d.]+), (\d+) updates applied, (\d+) gradients dropped", line)
    accuracy, applied, dropped = float(m[1]), int(m[2]), int(m[3])
    assert accuracy > 0.8, line
    assert (dropped > 0) == (mode == "backup"), line  # a backup drops the slowest's gradient
    assert applied > (200 if mode == "async" else 80), line  # async: one update per gradient
