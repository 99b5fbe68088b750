"""The GPU staging logic, run with a numpy stand-in for cupy (no GPU needed).

The real-device version is test_exchange_gpu.py (marked gpu)."""

import sys
from pathlib import Path

import numpy as np
import pytest

import hpcdist
from hpcdist import backend

sys.path.insert(0, str(Path(__file__).parent))
import fake_cupy  # noqa: E402
from gpu_data import SHAPES  # noqa: E402
from gpu_data import rank_data as _data  # noqa: E402
from gpu_data import reference as _ref  # noqa: E402
from gpu_data import rel_error as _rel  # noqa: E402

pytestmark = pytest.mark.mpi


@pytest.fixture
def cp(monkeypatch):
    fake = fake_cupy.make_module()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_cupy_checked", True)
    monkeypatch.setenv("HPCDIST_CUDA_AWARE_MPI", "0")
    return fake


@pytest.mark.parametrize("compression, bound", [("none", 1e-6), ("fp16", 2e-3), ("bf16", 1.6e-2)])
@pytest.mark.parametrize("small_bytes", [0, 1 << 30], ids=["window", "iallreduce"])
def test_device_gradients_staged_through_the_window(comm, cp, compression, bound, small_bytes):
    kw = dict(
        compression=compression, bucket_bytes=16 << 10, small_bytes=small_bytes, error_feedback=True
    )
    with hpcdist.AllreduceExchange(**kw) as ex:
        grads = ex.attach([cp.zeros(s, dtype=np.float32) for s in SHAPES])
        assert all(isinstance(g, cp.ndarray) for g in grads)
        assert cp.registered  # the rank's window region was page-locked
        for step in range(2):
            for i in reversed(range(len(grads))):
                grads[i][...] = cp.asarray(_data(comm.rank, step)[i])
                ex.gradient_ready(i)
            ex.synchronize()
            assert _rel([cp.asnumpy(g) for g in grads], _ref(comm.size, step)) <= bound
        state = ex.state_dict()
        assert all(type(v) is np.ndarray for v in state.values())
    assert not cp.registered  # unregistered on close


def test_flat_api_cupy_in_cupy_out(comm, cp):
    out = hpcdist.grouped_allreduce(
        [cp.asarray(d) for d in _data(comm.rank, 3)], compression="bf16"
    )
    assert all(isinstance(o, cp.ndarray) for o in out)
    assert _rel([cp.asnumpy(o) for o in out], _ref(comm.size, 3)) <= 1.6e-2
    x = cp.asarray(np.full(4, comm.rank, np.float32))
    y = hpcdist.broadcast(x, root=0)
    assert isinstance(y, cp.ndarray) and (cp.asnumpy(y) == 0).all()


@pytest.mark.parametrize("compression, bound", [("none", 1e-6), ("bf16", 1.6e-2)])
def test_cuda_aware_setting_hands_device_buffers_to_mpi(comm, cp, monkeypatch, compression, bound):
    monkeypatch.setenv("HPCDIST_CUDA_AWARE_MPI", "1")  # the fake's arrays are host memory
    with hpcdist.AllreduceExchange(compression=compression, bucket_bytes=16 << 10) as ex:
        grads = ex.attach([cp.zeros(s, dtype=np.float32) for s in SHAPES])
        assert ex.staging.cuda_aware
        for g, d in zip(grads, _data(comm.rank, 5), strict=True):
            g[...] = cp.asarray(d)
        ex.synchronize()
        assert _rel([cp.asnumpy(g) for g in grads], _ref(comm.size, 5)) <= bound
