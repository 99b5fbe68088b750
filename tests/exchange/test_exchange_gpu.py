"""GPU arrays through the exchange: cupy in, cupy out, staged through host memory."""

import numpy as np
import pytest

import hpcdist

pytestmark = [pytest.mark.gpu, pytest.mark.mpi]

SHAPES = [(17, 3), (0,), (5000,), (40000,)]


def _data(rank, seed=0):
    rng = np.random.default_rng(seed * 31 + rank)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _ref(size, seed=0):
    every = [_data(r, seed) for r in range(size)]
    return [sum(e[i].astype(np.float64) for e in every) / size for i in range(len(SHAPES))]


def _rel(out, ref):
    num = sum(float(np.sum((o - r) ** 2)) for o, r in zip(out, ref, strict=True))
    return (num / sum(float(np.sum(r**2)) for r in ref)) ** 0.5


@pytest.mark.parametrize("compression, bound", [("none", 1e-6), ("fp16", 2e-3), ("bf16", 1.6e-2)])
def test_grouped_allreduce_cupy_in_cupy_out(comm, compression, bound):
    import cupy as cp

    out = hpcdist.grouped_allreduce(
        [cp.asarray(d) for d in _data(comm.rank)], compression=compression
    )
    assert all(isinstance(o, cp.ndarray) for o in out)
    assert _rel([cp.asnumpy(o) for o in out], _ref(comm.size)) <= bound


@pytest.mark.parametrize("compression", ["none", "bf16"])
def test_exchange_device_gradients(comm, compression):
    import cupy as cp

    with hpcdist.AllreduceExchange(compression=compression, bucket_bytes=16 << 10) as ex:
        grads = ex.attach([cp.zeros(s, cp.float32) for s in SHAPES])
        assert all(isinstance(g, cp.ndarray) for g in grads)
        for step in range(2):
            for i in reversed(range(len(grads))):
                grads[i][...] = cp.asarray(_data(comm.rank, step)[i])
                ex.gradient_ready(i)
            ex.synchronize()
            bound = 1e-6 if compression == "none" else 1.6e-2
            assert _rel([cp.asnumpy(g) for g in grads], _ref(comm.size, step)) <= bound
