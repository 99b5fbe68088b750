"""Layers: gradients against central finite differences (float64), init, dropout, bind_grads."""

import numpy as np
import pytest

from hpcdist import nn

H = 1e-6


def numeric_grad(f, arr):
    """Central differences of the scalar f() with respect to every element of arr."""
    g = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + H
        fp = f()
        arr[idx] = old - H
        fm = f()
        arr[idx] = old
        g[idx] = (fp - fm) / (2 * H)
    return g


def check_layer(layer, x, reset=lambda: None):
    """backward(R) of <forward(x), R> against finite differences for x and every parameter."""
    rng = np.random.default_rng(1)
    reset()
    r = rng.standard_normal(layer.forward(x).shape)

    def f():
        reset()
        return float(np.sum(layer.forward(x) * r))

    reset()
    layer.forward(x)
    dx = layer.backward(r)
    grads = [p.grad.copy() for p in layer.parameters()]
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=1e-6, atol=1e-8)
    for p, g in zip(layer.parameters(), grads, strict=True):
        np.testing.assert_allclose(g, numeric_grad(f, p.data), rtol=1e-6, atol=1e-8)


def away_from_zero(shape, seed=0):
    """Inputs with |x| >= 0.1, so ReLU/ELU kinks stay outside the finite-difference step."""
    x = np.random.default_rng(seed).uniform(0.1, 2.0, shape)
    return x * np.where(np.random.default_rng(seed + 1).random(shape) < 0.5, -1, 1)


@pytest.mark.parametrize("init", ["he", "glorot"])
def test_dense_gradients(init):
    layer = nn.Dense(4, 3, init=init, seed=3, dtype=np.float64)
    layer.bias.data[:] = [0.1, -0.2, 0.3]
    check_layer(layer, np.random.default_rng(0).standard_normal((5, 4)))


@pytest.mark.parametrize(
    "make", [nn.ReLU, lambda: nn.ELU(0.7), nn.Tanh], ids=["relu", "elu", "tanh"]
)
def test_activation_gradients(make):
    check_layer(make(), away_from_zero((5, 4)))


def test_activation_values_against_formulas():
    x = away_from_zero((3, 4))
    np.testing.assert_array_equal(nn.ReLU().forward(x), np.where(x > 0, x, 0))
    np.testing.assert_allclose(nn.ELU(0.7).forward(x), np.where(x > 0, x, 0.7 * (np.exp(x) - 1)))
    np.testing.assert_allclose(nn.Tanh().forward(x), np.tanh(x))


def test_dropout_gradient_and_inverted_scaling():
    layer = nn.Dropout(0.4, seed=5)
    state = layer.get_rng_state()
    check_layer(layer, away_from_zero((6, 5)), reset=lambda: layer.set_rng_state(state))
    y = layer.forward(np.ones((2000, 50)))
    kept = y != 0
    np.testing.assert_array_equal(y[kept], 1 / 0.6)
    assert abs(kept.mean() - 0.6) < 0.01


def test_sequential_gradients_end_to_end():
    model = nn.mlp([4, 6, 5, 3], activation="tanh", dropout=0.3, seed=2, dtype=np.float64)
    states = [m.get_rng_state() for m in model.modules() if isinstance(m, nn.Dropout)]
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]

    def reset():
        for m, s in zip(drops, states, strict=True):
            m.set_rng_state(s)

    check_layer(model, np.random.default_rng(0).standard_normal((5, 4)), reset=reset)


def test_backward_writes_into_bound_grad_arrays():
    model = nn.mlp([4, 5, 3], seed=0, dtype=np.float64)
    params = model.parameters()
    fused = np.full(sum(p.data.size for p in params), np.nan)
    views, offset = [], 0
    for p in params:
        views.append(fused[offset : offset + p.data.size].reshape(p.data.shape))
        offset += p.data.size
    model.bind_grads(views)
    x = np.random.default_rng(0).standard_normal((7, 4))
    model.backward(model.forward(x))
    for p, v in zip(model.parameters(), views, strict=True):
        assert p.grad is v
    # the fused buffer now holds the gradients of an unbound copy of the model
    ref = nn.mlp([4, 5, 3], seed=0, dtype=np.float64)
    ref.backward(ref.forward(x))
    np.testing.assert_array_equal(fused, np.concatenate([p.grad.ravel() for p in ref.parameters()]))
    model.zero_grad()
    assert not fused.any()


def test_backward_reports_each_gradient_final_last_layer_first():
    model = nn.mlp([4, 6, 5, 3], seed=1, dtype=np.float64)
    params = model.parameters()
    x = np.random.default_rng(1).standard_normal((7, 4))
    ref = nn.mlp([4, 6, 5, 3], seed=1, dtype=np.float64)
    ref.backward(ref.forward(x))
    order, snapshots = [], {}

    def ready(k):
        order.append(k)
        snapshots[k] = params[k].grad.copy()  # what the exchange would send now

    model.backward(model.forward(x), input_grad=False, on_ready=ready)
    assert order == [5, 4, 3, 2, 1, 0]  # each parameter once, backward order
    for k, p in enumerate(ref.parameters()):
        np.testing.assert_array_equal(snapshots[k], p.grad)  # final when reported


def test_bind_grads_rejects_wrong_shape_dtype_and_count():
    model = nn.mlp([4, 5, 3], seed=0)
    good = [np.zeros_like(p.data) for p in model.parameters()]
    with pytest.raises(ValueError, match="0.weight.*shape"):
        model.bind_grads([np.zeros((5, 4), np.float32)] + good[1:])
    with pytest.raises(ValueError, match="float32"):
        model.bind_grads([np.zeros((4, 5), np.float64)] + good[1:])
    with pytest.raises(ValueError, match="expected 4 arrays"):
        model.bind_grads(good[:3])


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Dense(2, 2).backward(np.zeros((1, 2), np.float32))


def test_same_seed_same_init_and_init_statistics():
    a, b = nn.mlp([64, 256, 10], seed=7), nn.mlp([64, 256, 10], seed=7)
    c = nn.mlp([64, 256, 10], seed=8)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)
        assert p.data.dtype == np.float32
    assert not np.array_equal(a.parameters()[0].data, c.parameters()[0].data)
    assert not np.array_equal(a.parameters()[0].data[:10, :10], a.parameters()[2].data[:10])
    w = nn.Dense(400, 300, init="he", seed=1).weight.data
    assert abs(w.std() - np.sqrt(2 / 400)) < 0.01 * np.sqrt(2 / 400) * 5
    g = nn.Dense(400, 300, init="glorot", seed=1).weight.data
    limit = np.sqrt(6 / 700)
    assert np.abs(g).max() <= limit and np.abs(g).max() > 0.99 * limit


def test_dropout_is_deterministic_from_seed_and_restorable():
    x = np.ones((8, 16), np.float32)
    a, b = nn.Dropout(0.5, seed=3), nn.Dropout(0.5, seed=3)
    first = a.forward(x)
    np.testing.assert_array_equal(first, b.forward(x))
    state = a.get_rng_state()
    assert all(isinstance(v, np.ndarray | np.generic) for v in state.values())
    nxt = a.forward(x)
    assert not np.array_equal(nxt, first)  # the mask moves on each step
    a.set_rng_state(state)
    np.testing.assert_array_equal(a.forward(x), nxt)
    a.eval()
    assert a.forward(x) is x


def test_dropout_state_is_six_rng_words_and_reads_the_older_layout():
    a = nn.Dropout(0.5, seed=3)
    a.rng.integers(0, 10, dtype=np.uint32)  # a buffered uint32: has_uint32 = 1
    state = a.get_rng_state()
    assert list(state) == ["pcg64"] and state["pcg64"].shape == (6,)
    assert state["pcg64"].dtype == np.uint64
    w = state["pcg64"]
    older = {"pcg64": w[:4], "has_uint32": np.int64(w[4]), "uinteger": np.uint64(w[5])}
    b = nn.Dropout(0.5, seed=9)
    b.set_rng_state(older)
    x = np.ones((4, 8), np.float32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    with pytest.raises(ValueError, match="not a state from get_rng_state"):
        b.set_rng_state({"pcg64": w[:5]})


def test_module_state_dict_round_trip_restores_params_and_dropout():
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    a = nn.mlp([6, 8, 3], dropout=0.5, seed=1)
    a.forward(x)
    state = a.state_dict()
    b = nn.mlp([6, 8, 3], dropout=0.5, seed=99)
    b.load_state_dict(state)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    with pytest.raises(ValueError, match="0.weight"):
        b.load_state_dict({})


def test_eval_mode_propagates_through_sequential():
    model = nn.mlp([4, 8, 2], dropout=0.9, seed=0).eval()
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(model.forward(x), model.forward(x))
    assert all(not m.training for m in model.modules())
    assert all(m.training for m in model.train().modules())
