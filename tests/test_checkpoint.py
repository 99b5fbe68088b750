"""Checkpoints: bitwise round trip, keep-K, atomic failure, refusal and fallback, multi-rank."""

import os

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from hpcdist import ckptfile
from hpcdist.checkpoint import CheckpointManager, CheckpointWarning, expected_spec, load_checkpoint
from hpcdist.errors import CheckpointError


def make_state(seed: int, rank: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "w": rng.standard_normal((4, 3)).astype(np.float32),
            "b": rng.standard_normal(3),
        },
        "optimizer": {
            "m_w": rng.standard_normal((4, 3)).astype(np.float32),
            "t": np.array(seed, dtype=np.int64),
        },
        "residuals": {"w": np.full((4, 3), rank, dtype=np.float16)},
        "pipeline": {"cursor": np.array([seed, rank], dtype=np.int64), "done": np.array([True])},
        "rng": {"state": np.arange(5, dtype=np.uint64) + 100 * rank + seed},
    }


def assert_bitwise(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for g in want:
        assert sorted(got[g]) == sorted(want[g]), g
        for n, a in want[g].items():
            b = got[g][n]
            assert b.dtype == a.dtype and b.shape == a.shape, f"{g}/{n}"
            assert np.asarray(a).tobytes() == b.tobytes(), f"{g}/{n}"


@pytest.fixture
def mgr(tmp_path):
    return CheckpointManager(tmp_path / "ckpt", keep=3, comm=MPI.COMM_SELF)


def test_round_trip_is_bitwise(mgr):
    state = make_state(7)
    meta = {"lr": 0.1, "model": "mlp", "layers": [4, 3]}
    path = mgr.save(12, 2, state, meta)
    assert path.name == "ckpt-0000000012.h5" and path.exists()
    got = mgr.restore(expected=expected_spec(state))
    assert (got.path, got.step, got.epoch, got.world_size, got.meta) == (path, 12, 2, 1, meta)
    assert_bitwise(got.arrays, state)


def test_file_layout_is_plain_hdf5(mgr):
    path = mgr.save(3, 0, make_state(1), {"a": 1})
    with h5py.File(path, "r") as f:
        assert f.attrs["complete"] == 1 and f.attrs["format_version"] == ckptfile.FORMAT_VERSION
        assert f.attrs["world_size"] == 1 and f.attrs["step"] == 3
        assert "params/w" in f and "ranks/0/rng/state" in f and "rng" not in f


def test_keep_k_rotation(mgr):
    for step in range(1, 7):
        mgr.save(step * 10, step, make_state(step))
    assert mgr.local_steps() == [40, 50, 60]
    assert sorted(os.listdir(mgr.directory)) == [f"ckpt-00000000{s}.h5" for s in (40, 50, 60)]
    assert mgr.latest() == mgr.path_for(60)


def test_save_below_newest_keeps_the_new_file(mgr):
    for step in (10, 20, 30):
        mgr.save(step, 0, make_state(step))
    mgr.save(15, 0, make_state(15))  # after a rollback: the new file survives rotation
    assert mgr.local_steps() == [15, 20, 30]
    assert_bitwise(mgr.restore(step=15).arrays, make_state(15))
    with pytest.raises(CheckpointError, match="ckpt-0000000099.h5"):
        mgr.restore(step=99)


def test_failure_mid_write_leaves_previous_whole(mgr, monkeypatch):
    first = make_state(1)
    mgr.save(1, 0, first)
    real, calls = ckptfile._write_dataset, []

    def failing(f, key, a, manifest):
        calls.append(key)
        if len(calls) == 3:
            raise OSError(28, "No space left on device (injected)")
        real(f, key, a, manifest)

    monkeypatch.setattr(ckptfile, "_write_dataset", failing)
    with pytest.raises(OSError, match="No space left"):
        mgr.save(2, 0, make_state(2))
    assert len(calls) == 3
    assert os.listdir(mgr.directory) == ["ckpt-0000000001.h5"]  # no temp file left behind
    assert_bitwise(mgr.restore().arrays, first)


def test_stray_temp_file_is_not_a_checkpoint(mgr):
    mgr.save(1, 0, make_state(1))
    (mgr.directory / ".tmp-ckpt-0000000009-1.h5").write_bytes(b"partial")
    (mgr.directory / "ckpt-0000000009.h5.part").write_bytes(b"partial")
    assert mgr.local_steps() == [1]
    assert mgr.restore().step == 1
    mgr.save(2, 0, make_state(2))  # the next save sweeps the killed writer's temp file
    assert not (mgr.directory / ".tmp-ckpt-0000000009-1.h5").exists()


def test_truncated_file_is_refused_and_previous_used(mgr):
    first = make_state(1)
    mgr.save(1, 0, first)
    newest = mgr.save(2, 0, make_state(2))
    os.truncate(newest, os.path.getsize(newest) // 2)
    with pytest.warns(CheckpointWarning, match=f"refused checkpoint {newest}"):
        got = mgr.restore(expected=expected_spec(first))
    assert got.step == 1
    assert_bitwise(got.arrays, first)
    with pytest.raises(CheckpointError, match=str(newest)):
        load_checkpoint(newest)


def test_flipped_bytes_fail_the_checksum(mgr):
    path = mgr.save(1, 0, make_state(1))
    with h5py.File(path, "r") as f:
        offset = f["params/w"].id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match=r"checksum mismatch in dataset params/w"):
        load_checkpoint(path)


def test_missing_complete_marker_is_refused(mgr):
    path = mgr.save(1, 0, make_state(1))
    with h5py.File(path, "r+") as f:
        del f.attrs["complete"]
    with pytest.raises(CheckpointError, match="complete"):
        load_checkpoint(path)


def test_mismatched_shapes_and_dtypes_are_refused(mgr):
    mgr.save(1, 0, make_state(1))
    spec = expected_spec(make_state(1))
    spec["params"]["w"] = ((5, 3), "float32")
    spec["optimizer"]["t"] = ((), "int32")
    spec["params"]["extra"] = ((2,), "float64")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError) as info:
        mgr.restore(expected=spec)
    msg = str(info.value)
    assert "ckpt-0000000001.h5" in msg
    assert "params/w: expected (5, 3) float32, found (4, 3) float32" in msg
    assert "optimizer/t: expected () int32, found () int64" in msg
    assert "params/extra: expected (2,) float64, missing" in msg


def test_other_world_size_is_refused(tmp_path):
    path = tmp_path / "ckpt-0000000001.h5"
    ckptfile.write_file(path, 1, 0, 4, {}, [("", make_state(1))])  # as a 4-rank job writes it
    with pytest.raises(CheckpointError, match=r"written by 4 ranks, this job has 1"):
        load_checkpoint(path, world_size=1)


def _edit_meta(path, edit):
    with h5py.File(path, "r+") as f:
        f.attrs["meta"] = edit(f.attrs["meta"])


def test_corrupt_meta_is_refused_and_previous_used(mgr):
    """Planted bug: meta outside the checksum (a garbled byte gave a bare JSONDecodeError)."""
    mgr.save(1, 0, make_state(1), {"momentum": 0.9})
    newest = mgr.save(2, 0, make_state(2), {"momentum": 0.9})
    _edit_meta(newest, lambda m: m[:3] + "\x07" + m[4:])
    with pytest.warns(CheckpointWarning, match=f"refused checkpoint {newest}.*checksum"):
        assert mgr.restore().step == 1
    with pytest.raises(CheckpointError, match=str(newest)):
        load_checkpoint(newest)


def test_changed_digit_in_meta_fails_the_checksum(mgr):
    """Planted bug: meta not covered by any checksum (momentum 0.9 -> 0.1 was accepted)."""
    path = mgr.save(1, 0, make_state(1), {"optimizer": {"momentum": 0.9}})
    _edit_meta(path, lambda m: m.replace("0.9", "0.1"))
    with pytest.raises(CheckpointError, match="attributes fail their checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize("key", ["meta", "step"])
def test_attribute_of_the_wrong_kind_is_a_checkpoint_error(mgr, key):
    """A pickle (opaque bytes) in an attribute gave TypeError instead of CheckpointError."""
    import pickle

    path = mgr.save(1, 0, make_state(1), {"a": 1})
    with h5py.File(path, "r+") as f:
        f.attrs[key] = np.void(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=f"attribute '{key}' is void"):
        load_checkpoint(path)


def test_shards_join_into_whole_arrays(mgr):
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    shards = [
        ckptfile.Shard("params", "w", (4, 3), ((0, 4), (0, 2)), w[:, :2]),
        ckptfile.Shard("params", "w", (4, 3), ((0, 4), (2, 3)), w[:, 2:]),
        ckptfile.Shard("optimizer", "v.0", (5,), ((0, 5),), np.ones(5)),
    ]
    mgr.save(1, 0, {"rng": {"s": np.zeros(2)}}, shards=shards)
    got = mgr.restore().arrays
    np.testing.assert_array_equal(got["params"]["w"], w)
    np.testing.assert_array_equal(got["optimizer"]["v.0"], np.ones(5))


def test_shards_with_a_gap_or_overlap_are_refused(mgr):
    gap = [ckptfile.Shard("params", "w", (4,), ((0, 3),), np.zeros(3, np.float32))]
    with pytest.raises(CheckpointError, match=r"params/w \(4,\) cover 1 element"):
        mgr.save(1, 0, {}, shards=gap)
    twice = gap + [ckptfile.Shard("params", "w", (4,), ((2, 4),), np.zeros(2, np.float32))]
    with pytest.raises(CheckpointError, match="cover 1 element"):
        mgr.save(1, 0, {}, shards=twice)
    assert mgr.local_steps() == []


def test_empty_directory_restores_nothing(mgr):
    assert mgr.latest() is None and mgr.restore() is None


def test_bad_arguments(mgr):
    with pytest.raises(ValueError, match="step"):
        mgr.save(-1, 0, make_state(1))
    with pytest.raises(TypeError, match="params/s"):
        mgr.save(1, 0, {"params": {"s": np.array(["x"], dtype=object)}})
    with pytest.raises(TypeError, match="not JSON serializable"):
        mgr.save(1, 0, make_state(1), {"f": object()})
    with pytest.raises(ValueError, match="keep"):
        CheckpointManager(mgr.directory, keep=0, comm=MPI.COMM_SELF)
    assert mgr.local_steps() == []


@pytest.mark.mpi
def test_multi_rank_per_rank_state_round_trip(comm, mpi_tmp_path):
    mgr = CheckpointManager(mpi_tmp_path / "ckpt", keep=2, comm=comm)
    for step in (5, 6, 7):
        mgr.save(step, step // 2, make_state(step, comm.rank), {"step": step})
    assert mgr.local_steps() == [6, 7]
    want = make_state(7, comm.rank)
    got = mgr.restore(expected=expected_spec(want))
    assert (got.step, got.world_size, got.meta) == (7, comm.size, {"step": 7})
    assert_bitwise(got.arrays, want)  # params from rank 0 (equal on all), the rest this rank's own


@pytest.mark.mpi
def test_multi_rank_agrees_on_newest_seen_by_all(comm, mpi_tmp_path, monkeypatch):
    mgr = CheckpointManager(mpi_tmp_path / "ckpt", keep=3, comm=comm)
    for step in (1, 2):
        mgr.save(step, 0, make_state(step, comm.rank))
    if comm.rank == comm.size - 1:  # this rank's view of the shared file system lags
        monkeypatch.setattr(mgr, "local_steps", lambda: [1])
    assert mgr.latest() == mgr.path_for(1)
    got = mgr.restore()
    assert got.step == 1
    assert_bitwise(got.arrays, make_state(1, comm.rank))


@pytest.mark.mpi
def test_multi_rank_falls_back_together_when_one_rank_refuses(comm, mpi_tmp_path):
    mgr = CheckpointManager(mpi_tmp_path / "ckpt", keep=3, comm=comm)
    for step in (1, 2):
        mgr.save(step, 0, make_state(step, comm.rank))
    last = comm.size - 1
    if comm.rank == 0:  # garble only the last rank's own RNG state in the newest file
        with h5py.File(mgr.path_for(2), "r+") as f:
            f[f"ranks/{last}/rng/state"][0] = 12345
    comm.Barrier()
    with pytest.warns(CheckpointWarning, match=f"rank {last}: .*checksum mismatch"):
        got = mgr.restore()
    assert got.step == 1
    assert_bitwise(got.arrays, make_state(1, comm.rank))


@pytest.mark.mpi
def test_multi_rank_save_failure_reaches_every_rank(comm, mpi_tmp_path, monkeypatch):
    mgr = CheckpointManager(mpi_tmp_path / "ckpt", comm=comm)
    mgr.save(1, 0, make_state(1, comm.rank))

    def failing(*args):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(ckptfile, "_write_dataset", failing)
    with pytest.raises(OSError, match="No space left"):
        mgr.save(2, 0, make_state(2, comm.rank))
    comm.Barrier()
    assert mgr.local_steps() == [1]
    assert len(os.listdir(mgr.directory)) == 1
