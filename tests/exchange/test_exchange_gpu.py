"""GPU arrays through the exchange: cupy in, cupy out, staged through host memory."""

import pytest
from gpu_data import SHAPES
from gpu_data import rank_data as _data
from gpu_data import reference as _ref
from gpu_data import rel_error as _rel

import hpcdist

pytestmark = [pytest.mark.gpu, pytest.mark.mpi]


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
