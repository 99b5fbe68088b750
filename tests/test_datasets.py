"""The data set cache on two (pretend) nodes that do not share it: built once per node."""

import json

import numpy as np
import pytest
from launch import ROOT, run_mpi

from hpcdist import datasets
from hpcdist.data import HDF5Source
from hpcdist.data.convert import write_shards

WRAPPER = str(ROOT / "tests/scripts/pernode_cache.py")
FAST = ["--epochs", "1", "--hidden", "16"]


def _train_on_two_nodes(tmp_path, shared: str | None, n: int = 4):
    """n ranks as 2 pretend nodes, each node with its own cache directory."""
    env = {"HPCDIST_RANKS_PER_NODE": str(n // 2), "PERNODE_CACHE_BASE": str(tmp_path / "cache")}
    if shared is not None:
        env["HPCDIST_CACHE_SHARED"] = shared
    args = [WRAPPER, "hpcdist.train", "--run-dir", str(tmp_path / "run"), *FAST]
    return run_mpi(n, args, timeout=180, env=env)


def _copies(tmp_path) -> list:
    return sorted(tmp_path.glob("cache/node*/digits-*/dataset.json"))


@pytest.mark.launcher
@pytest.mark.parametrize("shared", [None, "0"])  # detected, or said
def test_a_node_local_cache_is_built_once_per_node_and_training_runs(tmp_path, shared):
    res = _train_on_two_nodes(tmp_path, shared)
    assert res.returncode == 0, res.output[-3000:]
    copies = _copies(tmp_path)
    assert [c.parent.parent.name for c in copies] == ["node0", "node1"]
    prints = {datasets.fingerprint(c.parent) for c in copies}
    assert len(prints) == 1  # the same records on both nodes
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["world_size"] == 4 and summary["status"] == "finished"


@pytest.mark.launcher
def test_a_cache_said_to_be_shared_but_not_seen_fails_saying_what_to_set(tmp_path):
    res = _train_on_two_nodes(tmp_path, "1")
    assert res.returncode != 0
    assert "rank(s) [2, 3]" in res.output
    assert "HPCDIST_CACHE_SHARED=1 says the cache is on a file system every node shares" in (
        res.output
    )
    assert [c.parent.parent.name for c in _copies(tmp_path)] == ["node0"]  # rank 0's only


@pytest.mark.launcher
def test_nodes_with_different_data_fail_at_the_agreement_check_saying_what_to_do(
    tmp_path, monkeypatch
):
    # node1's cache holds the digits with the training records in another order
    monkeypatch.setenv("HPCDIST_CACHE", str(tmp_path / "cache/node1"))
    directory = datasets.digits()
    src = HDF5Source(str(directory / "train"))
    parts = [src.read(i, 0, c) for i, c in enumerate(src.counts)]
    x, y = (np.concatenate(p) for p in zip(*parts, strict=True))
    order = np.random.default_rng(1).permutation(len(x))
    other = tmp_path / "other-train"
    write_shards(x[order], y[order], str(other), len(src.counts), prefix="train")
    for shard in (directory / "train").iterdir():
        shard.unlink()
    for shard in other.iterdir():
        shard.rename(directory / "train" / shard.name)
    res = _train_on_two_nodes(tmp_path, None)
    assert res.returncode != 0
    assert "data: rank(s) [0, 1] have" in res.output and "rank(s) [2, 3] have" in res.output
    assert "the ranks read different data sets: put --data" in res.output


def test_a_bad_cache_shared_setting_is_named(tmp_path, monkeypatch):
    from mpi4py import MPI

    monkeypatch.setenv("HPCDIST_CACHE", str(tmp_path))
    monkeypatch.setenv("HPCDIST_CACHE_SHARED", "yes")
    with pytest.raises(ValueError, match=r"\$HPCDIST_CACHE_SHARED must be 0, 1 or auto, got 'yes'"):
        datasets.digits(comm=MPI.COMM_SELF)
    assert not list(tmp_path.iterdir())  # nothing built


@pytest.mark.mpi
def test_too_few_synthetic_records_raise_data_set_error_on_every_rank(comm, mpi_tmp_path):
    """--synthetic 5 at a validation fraction of 0.1 has no validation record (round(0.5) = 0);
    6 is the fewest that split. Every rank raises the same error, and nothing is built."""
    import os

    os.environ["HPCDIST_CACHE"] = str(mpi_tmp_path / "cache")
    try:
        with pytest.raises(datasets.DataSetError) as err:
            datasets.synthetic(5, features=4)
        assert "5 records cannot be split into non-empty train and val sets" in str(err.value)
        assert "use at least 6 records" in str(err.value)
        assert comm.allgather(str(err.value)) == [str(err.value)] * comm.size
        assert datasets.synthetic(6, features=4).name == "synthetic-n6-d4-c10-s0"
    finally:
        del os.environ["HPCDIST_CACHE"]
    assert not list((mpi_tmp_path / "cache").glob("synthetic-n5-*"))


@pytest.mark.mpi
def test_a_batch_larger_than_the_records_per_rank_names_the_batch_size(comm, mpi_tmp_path):
    """60 synthetic records keep 54 for training (6 = round(60 * 0.1) for validation); a batch
    of 54 // size + 1 is more than each rank holds, and the message says the largest that fits."""
    import os

    from hpcdist import build
    from hpcdist.config import TrainConfig

    os.environ["HPCDIST_CACHE"] = str(mpi_tmp_path / "cache")
    try:
        directory = datasets.synthetic(60, features=4)
    finally:
        del os.environ["HPCDIST_CACHE"]
    per_rank = 54 // comm.size
    cfg = TrainConfig(batch_size=per_rank + 1)
    with pytest.raises(datasets.DataSetError) as err:
        build.data(cfg, directory, comm)
    assert str(err.value) == (
        f"54 training records cannot give {comm.size} ranks one batch of {per_rank + 1} each: "
        f"use a smaller --batch-size (at most {per_rank}) or fewer ranks"
    )
    assert (
        build.data(TrainConfig(batch_size=per_rank), directory, comm).train_split.num_records == 54
    )


@pytest.mark.launcher
@pytest.mark.parametrize(
    "flags, words",
    [
        (["--synthetic", "5"], "5 records cannot be split into non-empty train and val sets"),
        (  # the digits: 1797 records, 359 = round(0.2 * 1797) for validation, 1438 to train
            ["--batch-size", "400"],
            "1438 training records cannot give 4 ranks one batch of 400 each: use a smaller "
            "--batch-size (at most 359) or fewer ranks",
        ),
    ],
    ids=["synthetic-5", "batch-400"],
)
def test_a_data_set_the_settings_cannot_use_exits_2_with_one_line_per_rank(tmp_path, flags, words):
    """Was: a traceback from every rank and exit 1 (--synthetic 5 on 4 ranks)."""
    args = ["-m", "hpcdist.train", "--run-dir", str(tmp_path / "run"), *FAST, "--no-progress"]
    res = run_mpi(4, [*args, *flags], timeout=120, env={"HPCDIST_CACHE": str(tmp_path / "c")})
    assert res.returncode == 2, res.output[-3000:]
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("hpcdist.train: error")]
    assert sorted(ln.split(")")[0] for ln in lines) == [
        f"hpcdist.train: error (rank {r} of 4" for r in range(4)
    ]
    assert all(words in ln for ln in lines), lines
