"""python -m hpcdist.train with parameter servers: equal to allreduce, checkpoints both ways."""

import json

import h5py
import pytest
from launch import run_mpi

from hpcdist.ps import shard_plan

pytestmark = pytest.mark.launcher

COMMON = ["--seed", "5", "--epochs", "3", "--optimizer", "momentum", "--no-progress"]
PS = ["--exchange", "ps-sync", "--ps", "1"]


def _train(n, run_dir, *flags):
    res = run_mpi(n, ["-m", "hpcdist.train", *COMMON, "--run-dir", str(run_dir), *flags])
    assert res.returncode == 0, res.output[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def allreduce(tmp_path_factory):
    """The uninterrupted reference: 2 allreduce ranks."""
    return _train(2, tmp_path_factory.mktemp("ar"))


def _same(a, b):
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert a["final"][key] == pytest.approx(b["final"][key], rel=1e-6), key
    assert a["steps"] == b["steps"]


def test_ps_sync_with_every_worker_matches_allreduce(allreduce, tmp_path):
    summary = _train(3, tmp_path, *PS)
    _same(summary, allreduce)
    ps = summary["parameter_server"]
    assert ps["updates_applied"] == summary["steps"]
    assert ps["gradients_dropped"] == 0
    assert ps["tasks"][0]["pushes"] == 2 * summary["steps"]
    assert summary["data_parallel_size"] == 2
    last = sorted((tmp_path / "checkpoints").glob("ckpt-*.h5"))[-1]
    with h5py.File(last) as f:  # the usual layout, and the shard map beside it
        params = {k: f["params"][k].shape for k in f["params"]}
        assert sorted(f["optimizer"]) == sorted(f"velocity.{i}" for i in range(len(params)))
        table = f["ranks/0/residuals/ps_placement"][()]
    order = sorted(params, key=lambda k: (int(k.split(".")[0]), not k.endswith("weight")))
    shapes = [params[k] for k in order]  # the model's order: each layer's weight, bias
    want = shard_plan(shapes, 1).as_arrays()["ps_placement"]
    assert sorted(map(tuple, table.tolist())) == sorted(map(tuple, want.tolist()))


@pytest.mark.parametrize(
    "first, then",
    [(PS, PS), (PS, []), ([], PS)],
    ids=["ps-then-ps", "ps-then-allreduce", "allreduce-then-ps"],
)
def test_a_checkpoint_resumes_under_either_exchange(allreduce, tmp_path, first, then):
    """Stopped mid-epoch 2 (max steps), resumed: the run ends as the uninterrupted one."""
    _train(3 if first else 2, tmp_path, *first, "--max-steps", "60")
    summary = _train(3 if then else 2, tmp_path, *then, "--resume")
    assert summary["resumed_from"].endswith("ckpt-0000000060.h5")
    _same(summary, allreduce)
