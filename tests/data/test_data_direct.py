"""One-copy batches (DirectBatches) against a serial model of the pick-from-oldest shuffle."""

import threading

import numpy as np
import pytest
from test_data_pipeline import make_shards
from test_data_ring import reference

from hpcdist.data import HDF5Source, InputPipeline, direct
from hpcdist.data.batchpool import BatchPool


@pytest.fixture
def shards(comm, mpi_tmp_path):
    if comm.rank == 0:
        make_shards(mpi_tmp_path, counts=(700, 5, 1290))
    comm.Barrier()
    return mpi_tmp_path


@pytest.mark.mpi
@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_direct_batches_match_the_serial_model(comm, shards, remainder):
    batch, window = 16, 40
    pipe = InputPipeline(
        HDF5Source(str(shards)),
        batch,
        seed=5,
        comm=comm,
        shuffle_buffer=window,
        remainder=remainder,
        block_size=64,
        prefetch=64,
    )
    for epoch in (0, 1):
        a, b = pipe.plan.rank_ranges(epoch, comm.rank)
        blocks = [list(range(s, e)) for s, e in zip(a.tolist(), b.tolist(), strict=True)]
        want = reference(blocks, window, batch, [5, epoch, comm.rank, 0x5B0F])
        got = []
        for out in pipe.epoch(epoch):
            assert pipe.read_path == "direct"
            x, y = out[0], out[1]
            real = len(y) if remainder == "drop" else int(out[2].sum())
            np.testing.assert_array_equal(x[:real, 0], y[:real].astype(np.float32))
            got.append(y[:real].tolist())
        got = [g for g in got if g]
        assert got == want
    pipe.close()


def test_batch_pool_reuses_only_arrays_nothing_else_holds():
    pool = BatchPool()
    a, rows = pool.get((4, 3), np.float32)
    assert a.shape == (4, 3) and a.dtype == np.float32
    assert rows is None or (len(rows) == 4 and len(rows[0]) == 12)  # views without libc preadv
    pool.handed_out((a, rows))
    view = a[1:]
    b, _ = pool.get((4, 3), np.float32)
    assert b is not a  # a view of it is alive
    del view
    kept = memoryview(a)
    pool.handed_out((b, _))
    assert pool.get((4, 3), np.float32)[0] is not a
    del kept
    idents = {id(a), id(b)}
    del a, b, _
    assert id(pool.get((4, 3), np.float32)[0]) in idents


class EagerCondition(threading.Condition):
    """A condition whose every release is followed at once by a reader's pool.get (the
    collection of free arrays), the worst thread switch a real reader could make."""

    pools: set = set()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.acquire()  # not `with self`: that would come back here
        try:
            for pool in list(self.pools):
                pool._collect()
        finally:
            self.release()


@pytest.mark.mpi
def test_a_batch_is_never_refilled_while_its_taker_holds_it(comm, shards, monkeypatch):
    handed_out = BatchPool.handed_out

    def noting(pool, entry):
        EagerCondition.pools.add(pool)
        handed_out(pool, entry)

    monkeypatch.setattr(BatchPool, "handed_out", noting)
    monkeypatch.setattr(direct.threading, "Condition", EagerCondition)
    pipe = InputPipeline(
        HDF5Source(str(shards)),
        8,
        seed=2,
        comm=comm,
        readers="direct",
        shuffle_buffer=16,
        block_size=16,
        prefetch=8,  # readers a few batches ahead: arrays are asked of the pool all epoch
    )
    kept = list(pipe.epoch(0))  # every batch held: none may be filled again
    pipe.close()
    EagerCondition.pools.clear()
    assert len({id(x) for x, _ in kept}) == len(kept)
    for x, y in kept:
        np.testing.assert_array_equal(x[:, 0], y.astype(np.float32))
