"""Tensor parallelism: split sizes, and the split model against the unsplit one in float64."""

import numpy as np
import pytest
from parallel_data import DEEP, UNEVEN, batch, net

from hpcdist import parallel
from hpcdist.guard import Guard


def test_uneven_units_go_to_the_first_ranks():
    assert parallel.split_sizes(100, 3) == [34, 33, 33]
    assert parallel.split_sizes(10, 4) == [3, 3, 2, 2]
    assert [parallel.split_range(100, 3, r) for r in range(3)] == [(0, 34), (34, 67), (67, 100)]
    with pytest.raises(ValueError, match="cannot split 2 unit"):
        parallel.split_sizes(2, 3)


@pytest.fixture
def guard(comm):
    g = Guard(comm, 60, name="test")
    yield g
    g.free()


@pytest.mark.mpi
@pytest.mark.parametrize("sizes", [UNEVEN, DEEP, [64, 10], [64, 100, 10]])
def test_split_model_equals_the_unsplit_one(guard, sizes):
    x, y = batch()
    full = net(sizes)
    part = parallel.tensor_split(full, guard)
    # this rank holds its share of every weight; together they are the whole model
    whole = full.parameters()
    for piece in part.pieces():
        np.testing.assert_array_equal(piece.param.data, whole[piece.position].data[piece.slices()])
    report = parallel.compare(full, part, x, y, guard)
    report.raise_if_failed(rtol=1e-12, atol=1e-14)
    assert set(report.grads) == {p.name for p in full.parameters()}


@pytest.mark.mpi
def test_uneven_split_at_this_size_holds_the_documented_shares(guard):
    part = parallel.tensor_split(net(UNEVEN), guard)
    first = part.parameters()[0].data.shape
    assert first == (64, parallel.split_sizes(100, guard.size)[guard.rank])
    row = part.parameters()[2].data.shape
    assert row == (parallel.split_sizes(100, guard.size)[guard.rank], 50)


@pytest.mark.mpi
def test_dropout_between_split_layers_drops_the_units_the_unsplit_model_drops(guard):
    x, y = batch(seed=4)
    full = net(UNEVEN, dropout=0.3)
    part = parallel.tensor_split(full, guard)  # copies the dropout streams as they are now
    parallel.compare(full, part, x, y, guard).raise_if_failed(rtol=1e-12, atol=1e-14)


@pytest.mark.mpi
def test_a_wrong_gradient_is_caught_by_the_harness(guard):
    """The harness must fail when one rank's piece is off (a check that can fail)."""
    x, y = batch()
    full = net(UNEVEN)
    part = parallel.tensor_split(full, guard)
    part.layers[0].weight.data[0, 0] += 1e-3 if guard.rank == guard.size - 1 else 0.0
    report = parallel.compare(full, part, x, y, guard)
    assert "0.weight" in " ".join(report.failures())
    with pytest.raises(parallel.EquivalenceError, match="differs from the unsplit one"):
        report.raise_if_failed()
