"""The exchange's public surface: start/progress/done, attach with Parameters, keyword-only
options, allreduce-only result types, the registry and the broadcast module."""

import types

import numpy as np
import pytest
from exchange_data import rank_data, reference, rel_error

import hpcdist
from hpcdist import nn
from hpcdist.exchange import AllreduceStats, AllreduceSyncInfo, ExchangeStats, SyncInfo, registry

pytestmark = pytest.mark.mpi

SHAPES = [(300,), (20, 30), (5000,)]


def test_start_progress_done_then_synchronize(comm):
    with hpcdist.AllreduceExchange(bucket_bytes=4 << 10, small_bytes=0) as ex:
        grads = ex.attach([np.zeros(s, np.float32) for s in SHAPES])
        assert ex.done and ex.progress()  # nothing in flight yet
        for g, d in zip(grads, rank_data(comm.rank, 60, shapes=SHAPES), strict=True):
            g[...] = d
        ex.start()
        polls = 0
        while not ex.progress():  # other ranks advance theirs the same way
            polls += 1
            assert polls < 1_000_000
        assert ex.done
        info = ex.synchronize()  # finishes at once: only the bookkeeping is left
        assert isinstance(info, AllreduceSyncInfo) and info.buckets == len(ex.layout.buckets)
        assert rel_error(grads, reference(comm.size, "average", 60, shapes=SHAPES)) <= 1e-6
        assert ex.done and ex.stats.calls == 1


def test_flat_handle_polls_through_the_public_api(comm):
    h = hpcdist.grouped_allreduce_async(rank_data(comm.rank, 61, shapes=SHAPES), op="sum")
    while not h.done():
        pass
    assert rel_error(h.wait(), reference(comm.size, "sum", 61, shapes=SHAPES)) <= 1e-6


def _batch(rank: int):
    rng = np.random.default_rng(100 + rank)
    return rng.standard_normal((16, 6)).astype(np.float32), rng.integers(0, 3, 16)


def _local_grads(rank: int) -> list:
    """Rank `rank`'s own gradients, from a model no exchange touches (float64 copies)."""
    model = nn.mlp([6, 5, 3], seed=0)
    x, y = _batch(rank)
    _, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits, input_grad=False)
    return [p.grad.astype(np.float64) for p in model.parameters()]


def test_attach_parameters_binds_grads_for_a_plain_loop(comm):
    model = nn.mlp([6, 5, 3], seed=0)
    params = model.parameters()
    before = [p.data.copy() for p in params]
    with hpcdist.AllreduceExchange() as ex:
        grads = ex.attach(params)  # Parameters, not arrays
        assert all(p.grad is g for p, g in zip(params, grads, strict=True))
        x, y = _batch(comm.rank)
        _, dlogits = nn.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)  # writes into the exchange's buffers
        ex.synchronize()
        every = [_local_grads(r) for r in range(comm.size)]
        ref = [sum(e[i] for e in every) / comm.size for i in range(len(params))]
        assert rel_error([p.grad for p in params], ref) <= 1e-6
        nn.SGD(params, lr=0.1).step()
        for p, b, r in zip(params, before, ref, strict=True):
            np.testing.assert_allclose(p.data, b - 0.1 * r, rtol=1e-5, atol=1e-6)


def test_attach_mixes_arrays_and_parameters_and_rejects_others(comm):
    p = nn.Parameter("w", np.ones((2, 3), np.float32))
    with hpcdist.AllreduceExchange() as ex:
        g0, g1 = ex.attach([p, np.zeros(4, np.float64)])
        assert p.grad is g0 and g1.dtype == np.float64 and g1.shape == (4,)
    with hpcdist.AllreduceExchange() as ex:
        with pytest.raises(TypeError, match="entry 1 must be a numpy/cupy array"):
            ex.attach([np.zeros(2, np.float32), [1.0, 2.0]])


def test_torch_cpu_gradients_as_zero_copy_views(comm):
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(6, 3)
    with torch.no_grad():  # the same start on every rank
        torch.manual_seed(0)
        lin.reset_parameters()
    params = list(lin.parameters())
    with hpcdist.AllreduceExchange() as ex:
        grads = ex.attach([np.zeros(tuple(p.shape), np.float32) for p in params])
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g)  # shares the exchange's memory
        x, _ = _batch(comm.rank)
        lin(torch.from_numpy(x)).square().sum().backward()  # accumulates into p.grad in place
        assert all(p.grad.data_ptr() == g.ctypes.data for p, g in zip(params, grads, strict=True))
        mine = [g.astype(np.float64) for g in grads]
        ex.synchronize()
        every = comm.allgather(mine)
        ref = [sum(e[i] for e in every) / comm.size for i in range(len(params))]
        assert rel_error([p.grad.numpy() for p in params], ref) <= 1e-6


def test_options_are_keyword_only(comm):
    with pytest.raises(TypeError):
        hpcdist.AllreduceExchange(None, "bf16")
    with hpcdist.AllreduceExchange(comm, compression="bf16") as ex:  # comm may be positional
        assert ex.comp.name == "bf16"


def test_allreduce_details_stay_out_of_the_base_types(comm):
    assert not hasattr(SyncInfo(), "buckets") and not hasattr(ExchangeStats(), "history")
    assert issubclass(AllreduceSyncInfo, SyncInfo) and issubclass(AllreduceStats, ExchangeStats)
    with hpcdist.AllreduceExchange() as ex:
        ex.attach([np.zeros(3, np.float32)])
        info = ex.synchronize()
        assert (info.skip, ex.stats.history) == (False, [])
        assert ex.stats.seconds >= info.seconds >= 0 and ex.stats.wire_bytes == info.wire_bytes
        assert ex.updates == "gradients"


def test_registry_builds_the_allreduce_exchange(comm):
    roles = types.SimpleNamespace(job_comm=comm)
    config = types.SimpleNamespace(
        compression="bf16", bucket_bytes=1 << 16, error_feedback=True, timeout=30.0
    )
    assert "allreduce" in registry.names()
    with registry.create("allreduce", roles, config) as ex:
        assert isinstance(ex, hpcdist.AllreduceExchange)
        assert (ex.comp.name, ex.bucket_bytes, ex.error_feedback, ex.timeout) == (
            "bf16",
            1 << 16,
            True,
            30.0,
        )
    with pytest.raises(ValueError, match="unknown exchange 'nope'"):
        registry.get("nope")


def test_broadcast_lives_in_its_own_module(comm):
    from hpcdist.exchange import broadcasts as module

    assert hpcdist.broadcast is module.broadcast
    assert hpcdist.broadcast_parameters is module.broadcast_parameters
    x = np.full(3, comm.rank, np.int32)
    module.Broadcaster(comm).into([x], root=comm.size - 1)
    assert (x == comm.size - 1).all()
