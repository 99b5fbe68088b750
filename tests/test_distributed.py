"""DistributedOptimizer: a custom loop at 1-4 ranks equals one process on the union batch."""

import numpy as np
import pytest

import hpcdist
from hpcdist import nn

SIZES = [6, 8, 4]


def _batches(step: int, world: int, n: int = 5):
    """Every rank's batch at `step` (rank r takes the r-th), from one seeded generator."""
    rng = np.random.default_rng(100 + step)
    x = rng.standard_normal((world * n, SIZES[0]))
    y = rng.integers(0, SIZES[-1], world * n)
    return x.reshape(world, n, -1), y.reshape(world, n)


@pytest.mark.mpi
@pytest.mark.parametrize("make", [lambda p: nn.SGD(p, 0.1), lambda p: nn.Momentum(p, 0.1)])
def test_custom_loop_equals_one_process_on_the_union_batch(comm, make):
    rank, world = comm.rank, comm.size
    model = nn.mlp(SIZES, seed=rank, dtype=np.float64)  # different on purpose: root's win
    with hpcdist.DistributedOptimizer(make(model.parameters()), comm=comm) as opt:
        ref = nn.mlp(SIZES, seed=0, dtype=np.float64)
        ref_opt = make(ref.parameters())
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            np.testing.assert_array_equal(p.data, q.data)  # rank 0's, broadcast
        for step in range(4):
            xs, ys = _batches(step, world)
            _, d = nn.softmax_cross_entropy(model.forward(xs[rank]), ys[rank])
            model.backward(d, input_grad=False, on_ready=opt.gradient_ready)
            assert opt.step()
            _, d = nn.softmax_cross_entropy(ref.forward(xs.reshape(-1, SIZES[0])), ys.ravel())
            ref.backward(d, input_grad=False)  # mean over the union = mean of rank means
            ref_opt.step()
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)


@pytest.mark.mpi
def test_optimizer_state_is_broadcast_and_lr_passes_through(comm):
    model = nn.mlp(SIZES, seed=0, dtype=np.float64)
    inner = nn.Momentum(model.parameters(), 0.1)
    inner.state["velocity"][0][...] = comm.rank + 1.0  # differs per rank before the wrap
    with hpcdist.DistributedOptimizer(inner, comm=comm) as opt:
        assert (inner.state["velocity"][0] == 1.0).all()  # rank 0's
        opt.lr = 0.5
        assert inner.lr == 0.5


def test_an_exchange_that_applies_updates_itself_is_refused():
    class Applies(hpcdist.AllreduceExchange):
        updates = "parameters"

    model = nn.mlp(SIZES, seed=0)
    with pytest.raises(ValueError, match="applies the updates itself"):
        hpcdist.DistributedOptimizer(nn.SGD(model.parameters(), 0.1), Applies())
