"""cupy against numpy: the same init, step and dropout masks on the GPU as on the host."""

import numpy as np
import pytest

from hpcdist import nn
from hpcdist.backend import is_cupy, to_numpy

pytestmark = pytest.mark.gpu


def _train(xp, opt_cls, steps=3):
    model = nn.mlp([20, 32, 16, 5], dropout=0.2, seed=4, xp=xp)
    opt = opt_cls(model.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((12, 20)).astype(np.float32))
    y = xp.asarray(rng.integers(0, 5, 12))
    w = xp.asarray((np.arange(12) < 10).astype(np.float32))
    losses = []
    for _ in range(steps):
        loss, d = nn.softmax_cross_entropy(model.forward(x), y, weights=w)
        model.backward(d)
        opt.step()
        losses.append(float(loss))
    return model, opt, losses


def test_init_is_bitwise_identical_on_gpu():
    import cupy

    cpu, gpu = nn.mlp([30, 40, 10], seed=3), nn.mlp([30, 40, 10], seed=3, xp=cupy)
    for p, q in zip(cpu.parameters(), gpu.parameters(), strict=True):
        assert isinstance(q.data, cupy.ndarray) and isinstance(q.grad, cupy.ndarray)
        np.testing.assert_array_equal(p.data, q.data.get())


@pytest.mark.parametrize("opt_cls", [nn.SGD, nn.Momentum, nn.Adam])
def test_training_steps_match_numpy(opt_cls):
    import cupy

    cpu_model, cpu_opt, cpu_losses = _train(np, opt_cls)
    gpu_model, gpu_opt, gpu_losses = _train(cupy, opt_cls)
    np.testing.assert_allclose(gpu_losses, cpu_losses, rtol=1e-5)
    for p, q in zip(cpu_model.parameters(), gpu_model.parameters(), strict=True):
        np.testing.assert_allclose(to_numpy(q.data), p.data, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(to_numpy(q.grad), p.grad, rtol=1e-4, atol=1e-6)
    gpu_state = gpu_opt.state_dict()
    assert not any(is_cupy(v) for v in gpu_state.values())  # host copies, HDF5-storable
    gpu_opt.load_state_dict(cpu_opt.state_dict())


def test_bind_grads_and_evaluation_sums_on_gpu():
    import cupy

    model = nn.mlp([6, 8, 3], seed=0, xp=cupy)
    fused = cupy.zeros(sum(p.data.size for p in model.parameters()), cupy.float32)
    views, off = [], 0
    for p in model.parameters():
        views.append(fused[off : off + p.data.size].reshape(p.data.shape))
        off += p.data.size
    model.bind_grads(views)
    x = cupy.asarray(np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    model.backward(model.forward(x))
    assert float(cupy.abs(fused).sum()) > 0
    with pytest.raises(ValueError, match="ndarray"):
        model.bind_grads([to_numpy(v) for v in views])
    y = np.array([0, 1, 2, 1])
    logits = model.forward(x)
    ref = nn.softmax_cross_entropy_sums(to_numpy(logits), y)
    got = nn.softmax_cross_entropy_sums(logits, cupy.asarray(y))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
