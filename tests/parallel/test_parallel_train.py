"""python -m hpcdist.train --model-parallel: split runs end where the data-parallel ones do,
checkpoints in the usual params/ layout resume split or unsplit, bad layouts are named."""

import json
from pathlib import Path

import numpy as np
import pytest
from launch import run_mpi

from hpcdist.checkpoint import load_checkpoint

pytestmark = pytest.mark.launcher

SGD = ["--optimizer", "sgd", "--seed", "7", "--epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One digits cache for the module's runs."""
    return {"HPCDIST_CACHE": str(tmp_path_factory.mktemp("cache"))}


def train(n, run_dir, *flags, env, timeout=180):
    res = run_mpi(n, ["-m", "hpcdist.train", "--run-dir", str(run_dir), *flags], timeout, env=env)
    assert res.returncode == 0, res.output[-3000:]
    return json.loads((Path(run_dir) / "summary.json").read_text())


def assert_same_end(got: dict, want: dict, rtol=1e-4):
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert got["final"][key] == pytest.approx(want["final"][key], rel=rtol), key
    assert got["steps"] == want["steps"] and got["global_batch"] == want["global_batch"]


def test_pipeline_and_tensor_at_4_ranks_end_where_2_data_parallel_ranks_do(tmp_path, cache):
    plain = train(2, tmp_path / "dp", *SGD, env=cache)
    flags = ["--mp-size", "2", "--micro-batches", "4"]
    pipe = train(4, tmp_path / "pp", *SGD, "--model-parallel", "pipeline", *flags, env=cache)
    tensor = train(
        4, tmp_path / "tp", *SGD, "--model-parallel", "tensor", "--mp-size", "2", env=cache
    )
    assert_same_end(pipe, plain)
    assert_same_end(tensor, plain)
    assert pipe["data_parallel_size"] == tensor["data_parallel_size"] == 2
    assert pipe["world_size"] == 4
    # the split runs' checkpoints hold the whole arrays, named as the unsplit model names them
    want = load_checkpoint(sorted((tmp_path / "dp/checkpoints").glob("*.h5"))[-1])
    for run in ("pp", "tp"):
        got = load_checkpoint(sorted((tmp_path / run / "checkpoints").glob("*.h5"))[-1])
        assert got.world_size == 2  # one slot per replica, as a 2-rank job writes
        assert set(got.arrays["params"]) == set(want.arrays["params"])
        for name, a in want.arrays["params"].items():
            np.testing.assert_allclose(got.arrays["params"][name], a, rtol=1e-3, atol=1e-6)


def test_tensor_over_3_ranks_with_an_uneven_split_ends_where_1_rank_does(tmp_path, cache):
    hidden = ["--hidden", "100,50"]  # 100 units: 34, 33, 33
    one = train(1, tmp_path / "one", *SGD, *hidden, env=cache)
    three = train(
        3,
        tmp_path / "tp3",
        *SGD,
        *hidden,
        "--model-parallel",
        "tensor",
        "--mp-size",
        "3",
        env=cache,
    )
    assert_same_end(three, one)


def test_the_default_pipeline_job_at_4_ranks_reaches_095(tmp_path, cache):
    summary = train(
        4, tmp_path / "run", "--model-parallel", "pipeline", "--no-progress", env=cache, timeout=400
    )
    assert summary["final"]["val_accuracy"] >= 0.95
    assert summary["config"]["pipeline_schedule"] == "1f1b"


def test_a_split_checkpoint_resumes_unsplit_and_split_in_another_form(tmp_path, cache):
    common = ["--seed", "5", "--epochs", "3", "--dropout", "0.1", "--no-progress"]
    whole = train(2, tmp_path / "whole", *common, env=cache)
    first = ["--model-parallel", "pipeline", "--max-steps", "50"]
    train(4, tmp_path / "a", *common, *first, env=cache)
    train(4, tmp_path / "b", *common, *first, env=cache)
    unsplit = train(2, tmp_path / "a", *common, "--resume", env=cache)
    tensor = train(4, tmp_path / "b", *common, "--resume", "--model-parallel", "tensor", env=cache)
    for resumed in (unsplit, tensor):
        assert resumed["resumed_from"].endswith("ckpt-0000000050.h5")
        assert_same_end(resumed, whole)


@pytest.mark.parametrize(
    ("n", "flags", "message"),
    [
        (3, ["--model-parallel", "tensor", "--mp-size", "2"], "--mp-size 2 does not divide the 3"),
        (
            2,
            ["--model-parallel", "pipeline", "--mp-size", "2", "--micro-batches", "32"],
            "--micro-batches 32 is more than --batch-size 16",
        ),
        (
            1,
            [
                "--model-parallel",
                "pipeline",
                "--mp-size",
                "1",
                "--hidden",
                "8",
                "--micro-batches",
                "0",
            ],
            "micro_batches must be an integer >= 1",
        ),
        (
            4,
            ["--model-parallel", "pipeline", "--mp-size", "4", "--hidden", "8"],
            "cannot split a model of 2 Dense layers into 4 pipeline stages",
        ),
    ],
)
def test_bad_layouts_are_named(tmp_path, cache, n, flags, message):
    res = run_mpi(
        n, ["-m", "hpcdist.train", "--run-dir", str(tmp_path), *SGD, *flags], 120, env=cache
    )
    assert res.returncode != 0
    assert message in res.output
