"""Optimizers against float64 reference update rules; bitwise resume from state_dict via HDF5."""

import h5py
import numpy as np
import pytest

from hpcdist import nn

LRS = [0.1, 0.05, 0.2, 0.01, 0.1]  # a different lr each step, as a schedule would set


def ref_sgd(p, grads, wd):
    for lr, g in zip(LRS, grads, strict=True):
        p = p - lr * (g + wd * p)
    return p


def ref_momentum(p, grads, mu, nesterov, wd):
    v = np.zeros_like(p)
    for lr, g in zip(LRS, grads, strict=True):
        g = g + wd * p
        v = mu * v + g
        p = p - lr * (g + mu * v if nesterov else v)
    return p


def ref_adam(p, grads, b1, b2, eps, wd):
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, (lr, g) in enumerate(zip(LRS, grads, strict=True), start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


CASES = {
    "sgd": (lambda ps: nn.SGD(ps, 0.1), lambda p, g: ref_sgd(p, g, 0.0)),
    "sgd-wd": (lambda ps: nn.SGD(ps, 0.1, weight_decay=0.01), lambda p, g: ref_sgd(p, g, 0.01)),
    "momentum": (
        lambda ps: nn.Momentum(ps, 0.1, momentum=0.9),
        lambda p, g: ref_momentum(p, g, 0.9, False, 0.0),
    ),
    "nesterov-wd": (
        lambda ps: nn.Momentum(ps, 0.1, momentum=0.8, nesterov=True, weight_decay=0.05),
        lambda p, g: ref_momentum(p, g, 0.8, True, 0.05),
    ),
    "adam": (
        lambda ps: nn.Adam(ps, 0.1, betas=(0.9, 0.99), eps=1e-6),
        lambda p, g: ref_adam(p, g, 0.9, 0.99, 1e-6, 0.0),
    ),
    "adam-wd": (
        lambda ps: nn.Adam(ps, 0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1),
        lambda p, g: ref_adam(p, g, 0.8, 0.9, 1e-3, 0.1),
    ),
}


def run(make_opt, dtype):
    """Five steps of an optimizer on one Parameter with seeded gradients."""
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in LRS]
    param = nn.Parameter("w", p0.astype(dtype))
    opt = make_opt([param])
    for lr, g in zip(LRS, grads, strict=True):
        opt.lr = lr
        param.grad[...] = g
        opt.step()
    return p0, grads, param.data


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_update_matches_float64_reference(name, dtype, rtol):
    make_opt, ref = CASES[name]
    p0, grads, got = run(make_opt, dtype)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref(p0, grads), rtol=rtol, atol=rtol)


def test_step_is_in_place_and_leaves_grad_alone():
    param = nn.Parameter("w", np.ones(4, np.float32))
    data, grad = param.data, param.grad
    grad[...] = 2
    nn.Momentum([param], 0.1, weight_decay=0.1, nesterov=True).step()
    assert param.data is data and param.grad is grad
    np.testing.assert_array_equal(grad, 2)


def h5_round_trip(state, path):
    with h5py.File(path, "w") as f:
        for k, v in state.items():
            f[k] = v
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


@pytest.mark.parametrize("kind", ["sgd-wd", "nesterov-wd", "adam-wd"])
def test_state_dict_round_trip_continues_bitwise(kind, tmp_path):
    make_opt = CASES[kind][0]
    x = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    y = np.arange(16) % 3

    def train(model, opt, steps):
        for _ in range(steps):
            _, d = nn.softmax_cross_entropy(model.forward(x), y)
            model.backward(d)
            opt.lr *= 0.9
            opt.step()

    a = nn.mlp([5, 7, 3], dropout=0.3, seed=0)
    opt_a = make_opt(a.parameters())
    train(a, opt_a, 3)
    model_state = h5_round_trip(a.state_dict(), tmp_path / "model.h5")
    opt_state = h5_round_trip(opt_a.state_dict(), tmp_path / "opt.h5")
    b = nn.mlp([5, 7, 3], dropout=0.3, seed=1)
    opt_b = make_opt(b.parameters())
    b.load_state_dict(model_state)
    opt_b.load_state_dict(opt_state)
    assert opt_b.lr == opt_a.lr and opt_b.steps == 3
    train(a, opt_a, 4)
    train(b, opt_b, 4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_load_state_dict_rejects_wrong_kind_and_missing_entries():
    param = nn.Parameter("w", np.ones(4, np.float32))
    state = nn.Adam([param]).state_dict()
    with pytest.raises(ValueError, match="state is for Adam, not Momentum"):
        nn.Momentum([param], 0.1).load_state_dict(state)
    del state["m.0"]
    with pytest.raises(ValueError, match="m.0"):
        nn.Adam([param]).load_state_dict(state)


def test_bad_arguments_are_rejected():
    param = nn.Parameter("w", np.ones(4, np.float32))
    with pytest.raises(TypeError, match="Parameter"):
        nn.SGD([np.ones(3)], 0.1)
    with pytest.raises(ValueError, match="lr"):
        nn.SGD([param], -1.0)
    with pytest.raises(ValueError, match="momentum"):
        nn.Momentum([param], 0.1, momentum=1.5)
    with pytest.raises(ValueError, match="betas"):
        nn.Adam([param], betas=(0.9, 1.0))
