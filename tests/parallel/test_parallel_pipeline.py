"""Pipeline parallelism: stage split, and both schedules against the unsplit model in float64."""

import time

import numpy as np
import pytest
from parallel_data import DEEP, UNEVEN, batch, net

from hpcdist import parallel
from hpcdist.errors import CollectiveTimeoutError
from hpcdist.guard import Guard


def test_stages_balance_parameter_counts_and_start_at_a_dense():
    model = net([64, 128, 64, 10])  # Dense parameter counts 8320, 8256, 650
    assert parallel.stage_bounds(model, 1) == [(0, 5)]
    assert parallel.stage_bounds(model, 2) == [(0, 2), (2, 5)]
    assert parallel.stage_bounds(model, 3) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(ValueError, match="3 Dense layers into 4 pipeline stages"):
        parallel.stage_bounds(model, 4)


@pytest.fixture
def guard(comm):
    g = Guard(comm, 60, name="test")
    yield g
    g.free()


CASES = [
    (DEEP, 4, 13),  # uneven micro-batches: 4, 3, 3, 3
    (DEEP, 1, 8),
    (DEEP, 2, 8),  # fewer micro-batches than stages at 3 and 4 ranks
    (UNEVEN, 6, 12),
]


@pytest.mark.mpi
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("sizes", "micro", "n"), CASES)
def test_pipeline_equals_the_unsplit_model(guard, schedule, sizes, micro, n):
    if len(sizes) - 1 < guard.size:
        pytest.skip(f"{len(sizes) - 1} Dense layers make fewer stages than {guard.size} ranks")
    x, y = batch(n)
    full = net(sizes)
    part = parallel.PipelineModel(full, guard, micro_batches=micro, schedule=schedule)
    report = parallel.compare(full, part, x, y, guard)
    report.raise_if_failed(rtol=1e-12, atol=1e-14)
    # each stage holds whole parameters of its own layers; together, all of them once
    names = guard.allgather([p.name for p in part.parameters()])
    assert sorted(n for stage in names for n in stage) == sorted(p.name for p in full.parameters())


@pytest.mark.mpi
def test_pipeline_with_dropout_draws_the_unsplit_masks(guard):
    if guard.size > 5:
        pytest.skip("DEEP has 5 Dense layers")
    x, y = batch(12, seed=2)
    full = net(DEEP, dropout=0.25)
    part = parallel.PipelineModel(full, guard, micro_batches=3, schedule="1f1b")
    parallel.compare(full, part, x, y, guard).raise_if_failed(rtol=1e-12, atol=1e-14)


@pytest.mark.mpi
def test_more_micro_batches_than_samples_is_refused(guard):
    part = parallel.PipelineModel(net(DEEP), guard, micro_batches=8)
    x, y = batch(5)
    with pytest.raises(ValueError, match="batch of 5 cannot be cut into 8 micro-batches"):
        part.train_batch(x, y)


@pytest.mark.mpi
def test_a_missing_stage_times_out_naming_stage_rank_and_transfer(comm):
    """Stage 0 arrives late: the stage waiting for its activations names what it waited for."""
    if comm.size < 2:
        pytest.skip("needs two stages")
    pair = comm.Split(0 if comm.rank < 2 else 1, comm.rank)
    if comm.rank < 2:
        guard = Guard(pair, 60, name="test")
        part = parallel.PipelineModel(net(DEEP), guard, micro_batches=2, timeout=0.5)
        x, y = batch(4)
        if guard.rank == 0:
            time.sleep(2.0)  # past stage 1's deadline; its receive is still posted
            with pytest.raises(CollectiveTimeoutError, match="stage 0 .*recv grad"):
                part.train_batch(x, y)
        else:
            with pytest.raises(CollectiveTimeoutError) as info:
                part.train_batch(x, y)
            text = str(info.value)
            assert "pipeline stage 1 (rank 1) waiting to" in text
            assert "recv act of micro-batch 0 from stage 0 (rank 0)" in text
    comm.Barrier()  # the test's own sync, outside the package


@pytest.mark.mpi
def test_evaluation_forward_gives_every_stage_the_logits(guard):
    if guard.size > 5:
        pytest.skip("DEEP has 5 Dense layers")
    x, _ = batch(9)
    full = net(DEEP)
    part = parallel.PipelineModel(full, guard, micro_batches=2)
    np.testing.assert_allclose(part.forward(x), full.forward(x), rtol=1e-13, atol=1e-15)
