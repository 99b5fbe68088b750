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
