"""Trainer in-process at world sizes 1-4: replicas agree, evaluation matches a serial reference."""

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from hpcdist import datasets
from hpcdist.config import TrainConfig, validate
from hpcdist.trainer import Trainer


def _reference_eval(params: dict, val_dir) -> tuple[float, float, int]:
    """Mean loss and accuracy of the MLP on every val record, float64 numpy."""
    xs, ys = [], []
    for shard in sorted(val_dir.glob("*.h5")):
        with h5py.File(shard, "r") as f:
            xs.append(f["features"][...])
            ys.append(f["labels"][...])
    h = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys)
    names = sorted(params, key=lambda k: int(k.split(".")[0]))
    weights = [n for n in names if n.endswith("weight")]
    biases = [n for n in names if n.endswith("bias")]
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ params[w].astype(np.float64) + params[b].astype(np.float64)
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    z = h - h.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -logp[np.arange(len(y)), y].mean()
    return loss, float((h.argmax(axis=1) == y).mean()), len(y)


@pytest.mark.mpi
def test_fit_replicas_agree_and_eval_matches_reference(comm, mpi_tmp_path, monkeypatch):
    monkeypatch.setenv("HPCDIST_CACHE", str(mpi_tmp_path / "cache"))
    cfg = validate(
        TrainConfig(epochs=2, hidden=[24], run_dir=str(mpi_tmp_path / "run"), progress=False)
    )
    tr = Trainer(cfg)
    summary = tr.fit()
    assert summary["status"] == "finished"
    params = {p.name: p.data.copy() for p in tr.params}
    # Every replica holds the same parameters, bit for bit.
    digests = comm.allgather(b"".join(v.tobytes() for _, v in sorted(params.items())))
    assert all(d == digests[0] for d in digests)
    got = tr.evaluate()
    loss, acc, count = _reference_eval(params, tr.val_split.directory)
    assert got["val_count"] == count == tr.val_split.num_records
    assert abs(got["val_accuracy"] - acc) <= 1.0 / count  # float32 vs float64 argmax ties
    assert got["val_loss"] == pytest.approx(loss, rel=1e-4)
    # Same number of steps on every rank, as the data plan promises.
    assert comm.allgather(tr.step) == [tr.step] * comm.size
    assert tr.step == 2 * tr.steps_per_epoch
    tr.close()


def test_digits_split_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCDIST_CACHE", str(tmp_path))
    directory = datasets.digits(0.2, comm=MPI.COMM_SELF)  # this rank's own cache dir
    train = datasets.read_split(directory, "train")
    val = datasets.read_split(directory, "val")
    assert (train.num_records, val.num_records) == (1438, 359)
    assert (train.num_features, train.num_classes) == (64, 10)
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    with h5py.File(sorted(val.directory.glob("*.h5"))[0], "r") as f:
        first = f["labels"][...]
    np.testing.assert_array_equal(first, data.target[order[: len(first)]])


def test_read_split_names_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/ and val/"):
        datasets.read_split(tmp_path, "train")


@pytest.mark.mpi
def test_overlapped_backward_trains_bitwise_like_exchange_after_backward(mpi_tmp_path, monkeypatch):
    """Buckets started from backward (several, 1 KiB each) give the same sums as after it."""
    monkeypatch.setenv("HPCDIST_CACHE", str(mpi_tmp_path / "cache"))
    params = {}
    for overlap in (True, False):
        cfg = TrainConfig(
            epochs=1,
            max_steps=12,
            hidden=[24, 16],
            bucket_bytes=1024,
            overlap=overlap,
            run_dir=str(mpi_tmp_path / f"run-{overlap}"),
            progress=False,
        )
        with Trainer(cfg) as tr:
            assert tr.backward_kw if overlap else not tr.backward_kw
            tr.fit()
            params[overlap] = [p.data.copy() for p in tr.params]
    for a, b in zip(params[True], params[False], strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a).sum() > 0 for a in params[True])
