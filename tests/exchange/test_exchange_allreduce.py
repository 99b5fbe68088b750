"""Allreduce exchange against a serial float64 numpy reference, at world sizes 1-4."""

import numpy as np
import pytest
from exchange_data import SHAPES, rank_data, reference, rel_error

import hpcdist
from hpcdist.errors import NonFiniteGradientError

pytestmark = pytest.mark.mpi

TOL = {np.float32: 1e-6, np.float64: 1e-13}


@pytest.mark.parametrize("op", ["sum", "average"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_allreduce_matches_reference(comm, op, dtype):
    mine = rank_data(comm.rank, 1, dtype)
    out = hpcdist.grouped_allreduce(mine, op=op)
    ref = reference(comm.size, op, 1, dtype)
    for o, m, r in zip(out, mine, ref, strict=True):
        assert o.shape == r.shape and o.dtype == np.dtype(dtype) and o is not m
        np.testing.assert_allclose(o, r, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert rel_error(out, ref) <= TOL[dtype]
    np.testing.assert_array_equal(mine[0], rank_data(comm.rank, 1, dtype)[0])  # input untouched


@pytest.mark.parametrize("op", ["sum", "average"])
def test_single_allreduce_non_contiguous_input(comm, op):
    base = rank_data(comm.rank, 2, np.float64, [(40, 30)])[0]
    view = base[::3, 1::2].T  # strided and transposed
    out = hpcdist.allreduce(view, op=op)
    refs = [rank_data(r, 2, np.float64, [(40, 30)])[0][::3, 1::2].T for r in range(comm.size)]
    ref = sum(refs) / (comm.size if op == "average" else 1)
    assert out.shape == view.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_size_zero_and_empty_list(comm):
    assert hpcdist.grouped_allreduce([]) == []
    out = hpcdist.allreduce(np.zeros((0, 4), np.float32), op="sum")
    assert out.shape == (0, 4) and out.dtype == np.float32


def test_integer_sum(comm):
    out = hpcdist.allreduce(np.arange(10, dtype=np.int64) + comm.rank, op="sum")
    np.testing.assert_array_equal(out, sum(np.arange(10) + r for r in range(comm.size)))
    with pytest.raises(TypeError, match="floating"):
        hpcdist.allreduce(np.arange(3), op="average")
    with pytest.raises(ValueError, match="'sum' or 'average'"):
        hpcdist.allreduce(np.ones(3), op="max")


@pytest.mark.parametrize("compression, bound", [("fp16", 2e-3), ("bf16", 1.6e-2)])
def test_compressed_allreduce_error_bound(comm, compression, bound):
    out = hpcdist.grouped_allreduce(rank_data(comm.rank, 3), compression=compression)
    err = rel_error(out, reference(comm.size, "average", 3))
    assert err <= bound
    if comm.size > 1:
        assert err > 0  # it really went through 16 bits


def test_fp16_large_values_are_scaled_not_inf(comm):
    x = (np.linspace(-1, 1, 1000) * 1e6 * (comm.rank + 1)).astype(np.float32)
    out = hpcdist.allreduce(x, op="sum", compression=hpcdist.Compression.fp16)
    ref = sum(np.linspace(-1, 1, 1000) * 1e6 * (r + 1) for r in range(comm.size))
    assert np.isfinite(out).all()
    assert rel_error([out], [ref]) <= 2e-3


def test_async_handles_overlap(comm):
    handles = [hpcdist.allreduce_async(d, op="sum") for d in rank_data(comm.rank, 4)]
    grouped = hpcdist.grouped_allreduce_async(rank_data(comm.rank, 5), op="average")
    ref4, ref5 = reference(comm.size, "sum", 4), reference(comm.size, "average", 5)
    assert rel_error([h.wait() for h in handles], ref4) <= 1e-6
    assert rel_error(grouped.wait(), ref5) <= 1e-6


def test_sub_communicators_one_after_another(comm):
    # freed handles are reused by MPI: each new communicator must get its own exchange
    for color in (lambda r: r % 2, lambda r: int(r < comm.size // 2), lambda r: 0):
        sub = comm.Split(color(comm.rank), comm.rank)
        members = [r for r in range(comm.size) if color(r) == color(comm.rank)]
        out = hpcdist.grouped_allreduce(rank_data(comm.rank, 6), op="sum", comm=sub)
        every = [rank_data(r, 6) for r in members]
        ref = [sum(e[i].astype(np.float64) for e in every) for i in range(len(SHAPES))]
        assert rel_error(out, ref) <= 1e-6
        sub.Free()


def test_mixed_dtypes_compressed(comm):
    shapes, dtypes = [(300,), (50, 4), (7,)], [np.float64, np.float32, np.int32]
    mine = [
        (np.arange(np.prod(s)).reshape(s) % 11 + comm.rank).astype(d)
        for s, d in zip(shapes, dtypes, strict=True)
    ]
    out = hpcdist.grouped_allreduce(mine, op="sum", compression="bf16")
    for o, m in zip(out, mine, strict=True):
        ref = sum((m - comm.rank + r).astype(np.float64) for r in range(comm.size))
        assert o.dtype == m.dtype
        if o.dtype.kind == "i":
            np.testing.assert_array_equal(o, ref)  # integers are never compressed
        else:
            assert rel_error([o], [ref]) <= 1.6e-2


@pytest.mark.parametrize("compression", ["none", "bf16"])
@pytest.mark.parametrize("small_bytes", [0, 1 << 30], ids=["window", "iallreduce"])
def test_exchange_gradients_in_place_with_overlap(comm, compression, small_bytes):
    params = [np.zeros(s, np.float32) for s in SHAPES]
    kw = dict(compression=compression, bucket_bytes=8 << 10, small_bytes=small_bytes, check_every=1)
    with hpcdist.AllreduceExchange(compress_within_node=True, **kw) as ex:
        grads = ex.attach(params)
        assert [g.shape for g in grads] == [p.shape for p in params]
        for step in range(3):
            for i in reversed(range(len(grads))):  # backward: last layer first
                grads[i][...] = rank_data(comm.rank, 10 + step)[i]
                ex.gradient_ready(i)
            info = ex.synchronize()
            bound = 1e-6 if compression == "none" else 1.6e-2
            assert rel_error(grads, reference(comm.size, "average", 10 + step)) <= bound
            assert not info.nonfinite and not info.skip and info.seconds >= 0
        assert ex.stats.calls == 3


@pytest.mark.parametrize("forced", [True, False], ids=["everywhere", "between-nodes"])
def test_wire_bytes_halve_with_16_bit(comm, forced):
    """16 bits forced everywhere halve the wire; by default one node keeps full width."""
    shapes = [(5000,), (3000,)]
    counted = {}
    for comp in ("none", "fp16", "bf16"):
        kw = dict(compression=comp, bucket_bytes=4096, compress_within_node=forced)
        with hpcdist.AllreduceExchange(**kw) as ex:
            ex.attach([np.zeros(s, np.float32) for s in shapes])
            counted[comp] = ex.synchronize().wire_bytes
            assert ex.stats.wire_bytes == counted[comp]
            one_node = ex.group.num_nodes == 1
    if comm.size > 1:
        assert counted["none"] > 0
        assert counted["fp16"] == counted["bf16"]
        if forced or not one_node:
            assert abs(counted["fp16"] * 2 - counted["none"]) <= 1  # half, to the byte
        else:
            assert counted["fp16"] == counted["none"]
    else:
        assert counted == {"none": 0, "fp16": 0, "bf16": 0}


def test_nonfinite_is_reported_and_skippable(comm):
    params = [np.zeros(100, np.float32), np.zeros(70000, np.float32)]
    with hpcdist.AllreduceExchange(skip_nonfinite=True, bucket_bytes=64 << 10) as ex:
        grads = ex.attach(params)
        grads[1][5] = np.nan if comm.rank == comm.size - 1 else 1.0
        info = ex.synchronize()
        assert info.nonfinite and info.skip and ex.stats.skipped == 1
        grads[1][5] = 1.0
        assert not ex.synchronize().nonfinite
    with hpcdist.AllreduceExchange() as ex:
        grads = ex.attach(params)
        grads[0][0] = np.inf if comm.rank == 0 else 0.0
        with pytest.raises(NonFiniteGradientError, match="NaN or inf"):
            ex.synchronize()


def test_error_feedback_residuals_and_state_dict(comm):
    shapes = [(3000,)]
    kw = dict(compression="fp16", error_feedback=True, compress_within_node=True)
    with hpcdist.AllreduceExchange(**kw) as ex:
        grads = ex.attach([np.zeros(s, np.float32) for s in shapes])
        total_out = np.zeros(3000)
        steps = 5
        for _ in range(steps):
            grads[0][...] = rank_data(comm.rank, 20, shapes=shapes)[0]
            ex.synchronize()
            total_out += grads[0]
        ref = reference(comm.size, "average", 20, shapes=shapes)[0]
        state = ex.state_dict()
        assert set(state) == {"residual_0"} and isinstance(state["residual_0"], np.ndarray)
        if comm.size > 1:  # residuals carry the rounding: the running mean converges
            once = rel_error([grads[0]], [ref])
            assert rel_error([total_out / steps], [ref]) < once
        ex.load_state_dict({"residual_0": np.zeros_like(state["residual_0"])})
        assert not ex.state_dict()["residual_0"].any()


def test_broadcast_and_broadcast_parameters(comm):
    x = np.full((3, 4), comm.rank, np.float64)
    out = hpcdist.broadcast(x, root=comm.size - 1)
    np.testing.assert_array_equal(out, np.full((3, 4), comm.size - 1))
    np.testing.assert_array_equal(x, np.full((3, 4), comm.rank))  # a new array
    w = np.full(5, comm.rank, np.float32)
    adam_m = np.full((2, 2), comm.rank + 0.5, np.float32)
    step = np.array([comm.rank * 10], np.int64)
    view = np.zeros((4, 6))[:, ::2]  # non-contiguous target
    view[...] = comm.rank
    hpcdist.broadcast_parameters([w, adam_m, step, view], root=0)
    assert (w == 0).all() and (adam_m == 0.5).all() and step[0] == 0 and (view == 0).all()


def test_exchange_broadcast_parameters_in_place(comm):
    with hpcdist.AllreduceExchange() as ex:
        ex.attach([np.zeros(3, np.float32)])
        arrays = [np.full(4, comm.rank, np.float32), np.full(2, comm.rank, np.float64)]
        ex.broadcast_parameters(arrays, root=0)
        assert all((a == 0).all() for a in arrays)


def test_autotune_keeps_a_candidate_and_stays_correct(comm):
    from hpcdist.exchange.autotune import AUTOTUNE_CANDIDATES, AUTOTUNE_TRIALS

    shapes = [(300000,), (1000,)]
    with hpcdist.AllreduceExchange(autotune=True) as ex:
        grads = ex.attach([np.zeros(s, np.float32) for s in shapes])
        for step in range(len(AUTOTUNE_CANDIDATES) * AUTOTUNE_TRIALS + 2):
            for g, d in zip(grads, rank_data(comm.rank, step, shapes=shapes), strict=True):
                g[...] = d
            ex.synchronize()
            assert rel_error(grads, reference(comm.size, "average", step, shapes=shapes)) <= 1e-6
        assert ex.bucket_bytes in AUTOTUNE_CANDIDATES
        assert len(ex.stats.history) == len(AUTOTUNE_CANDIDATES) * AUTOTUNE_TRIALS


def test_attach_twice_and_bad_arguments(comm):
    with hpcdist.AllreduceExchange() as ex:
        with pytest.raises(hpcdist.ExchangeError, match="attach"):
            ex.synchronize()
        ex.attach([np.zeros(2, np.float32)])
        with pytest.raises(hpcdist.ExchangeError, match="already"):
            ex.attach([np.zeros(2, np.float32)])
    with pytest.raises(ValueError, match="compression"):
        hpcdist.AllreduceExchange(compression="int8")
