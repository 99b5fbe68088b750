"""DLPack producers (PyTorch CPU tensors) in and out of the flat API and the exchange."""

import numpy as np
import pytest
from exchange_data import SHAPES, rank_data, reference, rel_error

import hpcdist
from hpcdist.exchange.dlpack import to_array

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.mpi


def test_a_cpu_tensor_becomes_a_zero_copy_numpy_view():
    t = torch.arange(6, dtype=torch.float32, requires_grad=True)
    view = to_array(t)
    assert isinstance(view, np.ndarray) and view.ctypes.data == t.data_ptr()
    view[2] = 40.0
    assert float(t.detach()[2]) == 40.0  # the same memory, even for a tensor that requires grad


def test_grouped_allreduce_takes_and_gives_torch_tensors(comm):
    tensors = [torch.from_numpy(a) for a in rank_data(comm.rank, 60)]
    for op in ("sum", "average"):
        out = hpcdist.grouped_allreduce(tensors, op=op)
        assert all(isinstance(o, torch.Tensor) for o in out)
        assert [tuple(o.shape) for o in out] == [tuple(s) for s in SHAPES]
        assert rel_error([o.numpy() for o in out], reference(comm.size, op, 60)) <= 1e-6
    one = hpcdist.allreduce(torch.full((3,), float(comm.rank)), op="sum")
    assert isinstance(one, torch.Tensor)
    np.testing.assert_array_equal(one.numpy(), np.full(3, comm.size * (comm.size - 1) / 2))


def test_exchange_gradients_are_torch_views_of_its_buffers(comm):
    params = [torch.zeros(s, requires_grad=True) for s in SHAPES]
    with hpcdist.AllreduceExchange(bucket_bytes=8 << 10) as ex:
        grads = ex.attach(params)
        assert all(isinstance(g, torch.Tensor) for g in grads)
        mine = [
            (g.data_ptr(), a.ctypes.data) for g, a in zip(grads, ex.grads, strict=True) if a.size
        ]
        assert all(t == a for t, a in mine) and len(mine) == 5  # (empty tensors have no data)
        for step in range(2):
            for g, d in zip(grads, rank_data(comm.rank, 70 + step), strict=True):
                g.copy_(torch.from_numpy(d))  # written through torch
            ex.synchronize()
            got = [g.numpy() for g in grads]  # read through torch
            assert rel_error(got, reference(comm.size, "average", 70 + step)) <= 1e-6


def test_a_tensor_dlpack_cannot_share_is_named():
    class Opaque:
        def __dlpack__(self, **kw):
            raise BufferError("not contiguous")

        def __dlpack_device__(self):
            return (1, 0)

    with pytest.raises(TypeError, match="array 1: .*Opaque could not be shared through DLPack"):
        hpcdist.grouped_allreduce([np.ones(2, np.float32), Opaque()])
