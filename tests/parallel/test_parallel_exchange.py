"""The model-parallel exchange: a 2-D step against the unsplit model on all replicas' data,
and checkpoint shards joined into (and cut from) the whole arrays."""

import dataclasses

import numpy as np
import pytest
from parallel_data import DEEP, batch, net

from hpcdist import TrainConfig, nn, parallel
from hpcdist.ckptfile import assemble
from hpcdist.guard import Guard

N = 8  # samples per replica


def _layouts(size):
    for mp in range(1, size + 1):
        if size % mp == 0:
            for mode in ("tensor", "pipeline"):
                yield mode, mp


def _reference(replicas):
    """The unsplit model after one momentum step on every replica's batch, and its grads."""
    full = net(DEEP)
    xs, ys = zip(*(batch(N, seed=10 + r) for r in range(replicas)), strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    loss, d = nn.softmax_cross_entropy(full.forward(x), y)
    full.backward(d, input_grad=False)
    grads = {p.name: p.grad.copy() for p in full.parameters()}
    opt = nn.Momentum(full.parameters(), 0.1, momentum=0.9)
    opt.step()
    return full, opt, grads


def _split_step(mode, mp, comm):
    cfg = TrainConfig(model_parallel=mode, mp_size=mp, micro_batches=2, batch_size=N, timeout=60)
    layout = parallel.Layout2D(comm, mp, timeout=60)
    model, exchange = parallel.split_for_training(cfg, net(DEEP), layout)
    params = model.parameters()
    model.bind_grads(exchange.attach([p.data for p in params]))
    x, y = batch(N, seed=10 + layout.replica)  # each replica its own data
    if mode == "pipeline":
        model.train_batch(x, y)
    else:
        _, d = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(d, input_grad=False)
    exchange.synchronize()
    opt = nn.Momentum(params, 0.1, momentum=0.9)
    opt.step()
    return model, exchange, opt, layout


@pytest.mark.mpi
@pytest.mark.parametrize("index", range(8))
def test_a_2d_step_equals_the_unsplit_step_on_every_replicas_batch(comm, index):
    layouts = list(_layouts(comm.size))
    if index >= len(layouts):
        pytest.skip(f"{comm.size} ranks have {len(layouts)} layouts")
    mode, mp = layouts[index]
    if mode == "pipeline" and mp > 5:
        pytest.skip("DEEP has 5 Dense layers")
    full, full_opt, grads = _reference(comm.size // mp)
    model, exchange, opt, layout = _split_step(mode, mp, comm)
    guard = Guard(comm, 60, name="test")
    for piece in model.pieces():  # averaged over the replicas = the whole batch's gradient
        want = grads[piece.param.name][piece.slices()]
        np.testing.assert_allclose(piece.param.grad, want, rtol=1e-12, atol=1e-15)
    arrays = {"params": model.state_dict(), "optimizer": opt.state_dict(), "rng": {}}
    arrays["optimizer"] = {k: v for k, v in arrays["optimizer"].items() if "." in k}
    kept, shards = exchange.shards(arrays)
    assert set(kept) == {"rng"}
    whole = assemble([s for mine in guard.allgather(shards) for s in mine])
    for i, p in enumerate(full.parameters()):  # the usual layout: names and indices unsplit
        np.testing.assert_allclose(whole["params"][p.name], p.data, rtol=1e-12, atol=1e-15)
        want = full_opt.state_dict()[f"velocity.{i}"]
        got = whole["optimizer"][f"velocity.{i}"]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    local = exchange.localize(whole)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(local["params"][k], v)
    mine = opt.state_dict()
    for k, v in local["optimizer"].items():
        np.testing.assert_array_equal(v, mine[k])
    exchange.close()
    guard.free()


@pytest.mark.mpi
def test_other_exchanges_and_too_many_micro_batches_are_refused(comm):
    layout = parallel.Layout2D(comm, comm.size)
    cfg = TrainConfig(model_parallel="tensor", mp_size=comm.size, error_feedback=True)
    with pytest.raises(ValueError, match="without --error-feedback"):
        parallel.split_for_training(cfg, net(DEEP), layout)
    cfg = dataclasses.replace(cfg, model_parallel="pipeline", error_feedback=False)
    cfg = dataclasses.replace(cfg, micro_batches=9, batch_size=8)
    with pytest.raises(ValueError, match="--micro-batches 9 is more than --batch-size 8"):
        parallel.split_for_training(cfg, net(DEEP), layout)
    layout.free()
