"""The model-parallel examples run and show what they claim."""

import pytest
from launch import run_mpi

pytestmark = pytest.mark.launcher


def test_tensor_parallel_example(tmp_path):
    res = run_mpi(3, ["examples/tensor_parallel.py"], 180, env={"HPCDIST_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.output[-3000:]
    assert "rank 2 holds [(64, 33), (33,), (33, 50), (50,), (50, 3), (3,)]" in res.stdout
    assert "split == unsplit" in res.stdout
    accuracy = float(res.stdout.split("val accuracy")[-1].split()[0])
    assert accuracy > 0.9


def test_pipeline_parallel_example(tmp_path):
    res = run_mpi(3, ["examples/pipeline_parallel.py"], 180, env={"HPCDIST_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.output[-3000:]
    assert "gpipe: bubble 0.333 (formula 0.333), activations held per stage [4, 4, 4]" in res.stdout
    assert "1f1b: bubble 0.333 (formula 0.333), activations held per stage [3, 2, 1]" in res.stdout
    assert "stage 2: {recv act of micro-batch 0 from stage 1}, forward 0, backward 0" in res.stdout
    accuracy = float(res.stdout.split("val accuracy")[-1].split()[0])
    assert accuracy > 0.9
