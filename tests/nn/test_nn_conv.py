"""Image layers: Conv2D and MaxPool2D against finite differences (float64), a direct
loop reference and PyTorch where installed; the cnn builder."""

import numpy as np
import pytest
from test_nn_layers import check_layer

from hpcdist import nn


def conv_reference(x, w, b, stride, padding):
    """The convolution as its definition, one output element at a time (float64)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = xp.shape
    o, _, k, _ = w.shape
    ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv2d_matches_the_definition_and_finite_differences(stride, padding):
    rng = np.random.default_rng(stride * 10 + padding)
    conv = nn.Conv2D(2, 3, 3, stride=stride, padding=padding, seed=4, dtype=np.float64)
    conv.bias.data[:] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 7, 6))
    ref = conv_reference(x, conv.weight.data, conv.bias.data, stride, padding)
    np.testing.assert_allclose(conv.forward(x), ref, rtol=1e-12, atol=1e-12)
    check_layer(conv, x)


@pytest.mark.parametrize("k, stride", [(2, None), (3, 1), (3, 2)])
def test_maxpool_matches_the_definition_and_finite_differences(k, stride):
    rng = np.random.default_rng(k)
    x = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) / 1000.0  # distinct: no ties
    pool = nn.MaxPool2D(k, stride=stride)
    s = k if stride is None else stride
    ho = (7 - k) // s + 1
    ref = np.array(
        [[x[:, :, i * s : i * s + k, j * s : j * s + k].max(axis=(2, 3)) for j in range(ho)]
         for i in range(ho)]
    ).transpose(2, 3, 0, 1)  # fmt: skip
    np.testing.assert_array_equal(pool.forward(x), ref)
    check_layer(pool, x)


def test_reshape_and_flatten_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 64))
    model = nn.Sequential(nn.Reshape((1, 8, 8)), nn.Flatten())
    np.testing.assert_array_equal(model.forward(x), x)
    assert model.layers[0].forward(x).shape == (2, 1, 8, 8)
    check_layer(model, x)


def test_cnn_gradients_end_to_end_and_shapes():
    model = nn.cnn((1, 6, 6), 4, channels=(3,), hidden=(5,), seed=3, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((3, 36))
    assert model.forward(x).shape == (3, 4)
    names = [p.name for p in model.parameters()]
    assert names == ["1.weight", "1.bias", "5.weight", "5.bias", "7.weight", "7.bias"]
    check_layer(model, x)


def test_square_image_and_bad_sizes_are_named():
    assert nn.square_image(64) == (1, 8, 8)
    assert nn.square_image(784) == (1, 28, 28)
    with pytest.raises(ValueError, match="63 features is not a square"):
        nn.square_image(63)
    with pytest.raises(ValueError, match="too small"):
        nn.cnn((1, 2, 2), 3, channels=(4, 4))
    with pytest.raises(ValueError, match="expects 2 channels, got 3"):
        nn.Conv2D(2, 1, 3).forward(np.zeros((1, 3, 5, 5), np.float32))


def test_conv_and_pool_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 9, 9))
    conv = nn.Conv2D(2, 5, 3, stride=2, padding=1, seed=1, dtype=np.float64)
    conv.bias.data[:] = rng.standard_normal(5)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2D(2))
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(conv.weight.data.copy(), requires_grad=True)
    tb = torch.tensor(conv.bias.data.copy(), requires_grad=True)
    ty = torch.nn.functional.max_pool2d(
        torch.relu(torch.nn.functional.conv2d(tx, tw, tb, stride=2, padding=1)), 2
    )
    r = rng.standard_normal(ty.shape)
    (ty * torch.tensor(r)).sum().backward()
    y = model.forward(x)
    dx = model.backward(r)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.weight.grad, tw.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.bias.grad, tb.grad.numpy(), rtol=1e-10, atol=1e-12)
