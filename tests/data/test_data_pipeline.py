"""InputPipeline and EpochPlan under mpiexec: equal steps, disjoint shares, coverage, resume."""

import threading

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from hpcdist.data import ArraySource, EpochPlan, HDF5Source, InputPipeline, write_manifest
from hpcdist.data.producer import READ_PATHS
from hpcdist.errors import DataError
from hpcdist.guard import Guard

COUNTS = (1001, 17)
BATCH = 8


def make_shards(directory, counts=COUNTS, dim=3):
    """Shards whose feature row i (global) is [i, i, i] and label is i."""
    shards, start = [], 0
    for k, n in enumerate(counts):
        ids = np.arange(start, start + n)
        with h5py.File(directory / f"part-{k}.h5", "w") as f:
            f["features"] = np.repeat(ids[:, None], dim, axis=1).astype(np.float32)
            f["labels"] = ids.astype(np.int64)
        shards.append({"path": f"part-{k}.h5", "records": n})
        start += n
    write_manifest(
        str(directory), shards, feature_shape=[dim], feature_dtype="float32", label_dtype="int64"
    )
    return directory


@pytest.fixture
def shards(comm, mpi_tmp_path):
    if comm.rank == 0:
        make_shards(mpi_tmp_path)
    comm.Barrier()
    return mpi_tmp_path


def epoch_labels(pipe, epoch):
    out = []
    for x, y in pipe.epoch(epoch):
        np.testing.assert_array_equal(x[:, 0], y.astype(np.float32))  # rows stay paired
        out.append(y.copy())
    return out


@pytest.mark.mpi
def test_equal_batches_disjoint_shares_coverage_and_reshuffle(comm, shards):
    pipe = InputPipeline(
        HDF5Source(str(shards)), BATCH, seed=5, comm=comm, shuffle_buffer=40, block_size=64
    )
    ref_steps = sum(COUNTS) // (comm.size * BATCH)
    assert pipe.steps_per_epoch == ref_steps
    seen = []
    for epoch in range(3):
        batches = epoch_labels(pipe, epoch)
        assert len(batches) == ref_steps and all(len(b) == BATCH for b in batches)
        counts = comm.allgather(len(batches))
        assert len(set(counts)) == 1
        everyone = np.concatenate(comm.allgather(np.concatenate(batches)))
        assert len(np.unique(everyone)) == len(everyone)  # at most once per epoch
        seen.append(everyone)
    assert set(np.concatenate(seen).tolist()) == set(range(sum(COUNTS)))  # union covers all
    assert not np.array_equal(seen[0], seen[1])  # reshuffled
    again = InputPipeline(
        HDF5Source(str(shards)), BATCH, seed=5, comm=comm, shuffle_buffer=40, block_size=64
    )
    mine = epoch_labels(again, 1)
    everyone = np.concatenate(comm.allgather(np.concatenate(mine)))
    np.testing.assert_array_equal(everyone, seen[1])  # same seed, same order


@pytest.mark.mpi
def test_pad_covers_every_record_once_with_mask(comm, shards):
    pipe = InputPipeline(
        HDF5Source(str(shards)),
        BATCH,
        seed=1,
        comm=comm,
        shuffle_buffer=16,
        remainder="pad",
        num_threads=3,
    )
    real = []
    n = 0
    for x, y, mask in pipe.epoch(0):
        assert x.shape == (BATCH, 3) and mask.dtype == bool
        assert not x[~mask].any()
        real.append(y[mask])
        n += 1
    assert len(set(comm.allgather(n))) == 1
    everyone = np.concatenate(comm.allgather(np.concatenate(real)))
    assert sorted(everyone.tolist()) == list(range(sum(COUNTS)))
    assert pipe.stats.reduced(Guard(comm, name="test"))["records_read"] == sum(COUNTS)


@pytest.mark.mpi
def test_resume_mid_epoch_gives_the_remaining_batches(comm, shards):
    def make():
        return InputPipeline(
            HDF5Source(str(shards)), BATCH, seed=9, comm=comm, shuffle_buffer=30, block_size=50
        )

    full = epoch_labels(make(), 2)
    k = 7
    pipe = make()
    it = pipe.epoch(2)
    for _ in range(k):
        next(it)
    state = pipe.state_dict()
    it.close()
    assert state["step"] == k and state["buffer_ids"].dtype == np.int64
    resumed = make()
    resumed.load_state_dict({key: np.asarray(v) for key, v in state.items()})
    rest = epoch_labels(resumed, 2)
    assert len(rest) == len(full) - k
    for a, b in zip(rest, full[k:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_abandoned_iterator_stops_threads():
    src = ArraySource(np.zeros((5000, 4), np.float32), np.arange(5000))
    before = threading.active_count()
    pipe = InputPipeline(src, 16, shuffle_buffer=100, num_threads=3)
    it = pipe.epoch(0)
    for i, _ in enumerate(it):
        if i == 3:
            break
    it.close()
    assert threading.active_count() == before


def test_reader_error_is_raised_in_the_trainer():
    class Broken(ArraySource):
        def read(self, file_index, start, stop):
            if start >= 300:
                raise OSError(f"disk fell off at record {start}")
            return super().read(file_index, start, stop)

    src = Broken(np.zeros((1000, 2), np.float32), np.arange(1000))
    pipe = InputPipeline(src, 10, shuffle_buffer=20, block_size=100)
    with pytest.raises(OSError, match="disk fell off"):
        for _ in pipe.epoch(0):
            pass


def test_plan_shares_by_records_when_files_are_fewer_than_ranks():
    plan = EpochPlan([10], seed=0, world_size=4, batch_size=2, block_size=4)
    ids = []
    for r in range(4):
        a, b = plan.rank_ranges(0, r)
        ids.append(np.concatenate([np.arange(x, y) for x, y in zip(a, b, strict=True)]))
    assert [len(i) for i in ids] == [2, 2, 2, 2]
    assert len(np.unique(np.concatenate(ids))) == 8
    with pytest.raises(ValueError, match="remainder='pad'"):
        EpochPlan([5], seed=0, world_size=4, batch_size=2)


def path_pipeline(shards, comm, readers):
    return InputPipeline(
        HDF5Source(str(shards)),
        BATCH,
        seed=2,
        comm=comm,
        shuffle_buffer=20,
        block_size=64,
        readers=readers,
        num_threads=2,
    )


@pytest.mark.mpi
def test_every_read_path_gives_identical_batches_and_resumes_the_others(comm, shards):
    """Holds the read paths equivalent: the same batches for the same seed, and a state taken
    on one path continues exactly on any other (same window ids, same RNG words)."""
    runs = {}
    for readers in READ_PATHS:
        pipe = path_pipeline(shards, comm, readers)
        runs[readers] = epoch_labels(pipe, 0) + epoch_labels(pipe, 1)
        assert pipe.read_path == readers
        pipe.close()
    for readers, got in runs.items():
        assert len(got) == len(runs["direct"]), readers
        for a, b in zip(got, runs["direct"], strict=True):
            np.testing.assert_array_equal(a, b)
    k, steps = 5, len(runs["direct"]) // 2
    for first, then in (("direct", "ring"), ("ring", "processes"), ("processes", "direct")):
        pipe = path_pipeline(shards, comm, first)
        it = pipe.epoch(1)
        for _ in range(k):
            next(it)
        state = pipe.state_dict()
        it.close()
        pipe.close()
        resumed = path_pipeline(shards, comm, then)
        resumed.load_state_dict(state)
        rest = epoch_labels(resumed, 1)
        resumed.close()
        assert len(rest) == steps - k
        for a, b in zip(rest, runs["direct"][steps + k :], strict=True):
            np.testing.assert_array_equal(a, b)


def test_auto_reads_other_sources_through_the_ring_and_direct_refuses_them():
    src = ArraySource(np.arange(200, dtype=np.float32)[:, None], np.arange(200))
    auto = InputPipeline(src, 10, comm=MPI.COMM_SELF, shuffle_buffer=20, block_size=50)
    got = epoch_labels(auto, 0)
    assert auto.read_path == "ring" and sorted(np.concatenate(got).tolist()) == list(range(200))
    direct = InputPipeline(src, 10, comm=MPI.COMM_SELF, shuffle_buffer=20, readers="direct")
    with pytest.raises(DataError, match="readers='direct' cannot read"):
        next(direct.epoch(0))
    with pytest.raises(ValueError, match="readers must be one of"):
        InputPipeline(src, 10, comm=MPI.COMM_SELF, readers="fast")


@pytest.mark.mpi
def test_nonfinite_records_names_the_files_and_rows_of_this_ranks_share(comm, mpi_tmp_path):
    bad = {5: ("part-0.h5", 5), 640: ("part-0.h5", 640), 1003: ("part-1.h5", 2)}
    if comm.rank == 0:
        make_shards(mpi_tmp_path)
        for gid, (name, row) in bad.items():
            with h5py.File(mpi_tmp_path / name, "r+") as f:
                f["features"][row, 1] = np.nan if gid != 640 else np.inf
    comm.Barrier()
    pipe = InputPipeline(HDF5Source(str(mpi_tmp_path)), BATCH, seed=3, comm=comm)
    want = {}
    for epoch in (0, 1):
        mine = {int(v) for b in epoch_labels(pipe, epoch) for v in b}  # what this rank reads
        want[epoch] = sorted((str(mpi_tmp_path / bad[g][0]), bad[g][1]) for g in bad if g in mine)
        assert pipe.nonfinite_records(epoch) == want[epoch]
    everyone = {r for found in comm.allgather(pipe.nonfinite_records(0)) for r in found}
    assert {(p.rsplit("/", 1)[-1], r) for p, r in everyone} <= set(bad.values())
    first = pipe.nonfinite_records(0, limit=1)
    assert len(first) == min(1, len(want[0])) and set(first) <= set(want[0])
