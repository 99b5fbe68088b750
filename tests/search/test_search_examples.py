"""The search, ensemble and predict examples run and say what they should."""

import csv
import json

import pytest
from launch import run_mpi

pytestmark = pytest.mark.launcher


def test_search_then_ensemble_then_predict_examples(tmp_path):
    env = {"HPCDIST_CACHE": str(tmp_path / "cache")}
    run = tmp_path / "search"
    res = run_mpi(3, ["examples/search_digits.py", str(run)], 240, env)
    assert res.returncode == 0, res.output[-3000:]
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == 8 and {r["status"] for r in rows} <= {"ok", "pruned"}
    top = json.loads((run / "top.json").read_text())
    assert f"best trial {top[0]['trial']}: val accuracy {top[0]['val_accuracy']:.4f}" in res.stdout
    res = run_mpi(1, ["examples/ensemble_digits.py", str(run)], 120, env)
    assert res.returncode == 0, res.output[-3000:]
    for entry in top:
        assert f"member {entry['trial']}: {entry['val_accuracy']:.4f}" in res.stdout
    assert "soft vote: " in res.stdout and "hard vote: " in res.stdout
    ckpt = run / top[0]["checkpoint"]
    res = run_mpi(1, ["examples/predict_digits.py", str(ckpt)], 120, env)
    assert res.returncode == 0, res.output[-3000:]
    ratio = float(res.stdout.split("int8 model: ")[1].split("x")[0])
    assert ratio <= 0.3
    accs = res.stdout.split("float32 accuracy ")[1].split()
    assert abs(float(accs[0].rstrip(",")) - float(accs[2])) <= 0.01
