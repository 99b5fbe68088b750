"""Models of one's own: a CNN built with hpcdist.nn, trained by hpcdist.Trainer at 4 ranks."""

import json
import re

import pytest
from launch import run_mpi

pytestmark = pytest.mark.launcher


def test_custom_cnn_trains_to_097_with_equal_replicas(tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    run = tmp_path / "run"
    res = run_mpi(4, ["tests/scripts/custom_model.py", str(run), "20"], 600, env)
    assert res.returncode == 0, res.output[-4000:]
    accuracy = float(re.search(r"val_accuracy (\S+)", res.stdout)[1])
    assert accuracy >= 0.97, res.stdout[-3000:]
    assert "parameters equal on every rank: True" in res.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 4
    assert summary["final"]["val_accuracy"] == pytest.approx(accuracy, abs=1e-4)
