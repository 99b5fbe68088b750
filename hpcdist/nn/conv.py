"""Image layers over NCHW arrays (numpy or cupy): Conv2D, MaxPool2D, Flatten, Reshape.

Conv2D is im2col: a strided view of the padded input gathers every k x k
window, one matrix product applies the filters, and backward scatters the
window gradients back with one strided add per kernel offset (k*k adds, no
per-pixel Python).
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from .init import child_seeds, init_weight
from .layers import ACTIVATIONS, Dense, Module, Parameter, Sequential


def _windows(xp, x, k: int, stride: int, out_hw: tuple[int, int]):
    """A (N, C, Ho, Wo, k, k) strided view of x (N, C, H, W): every k x k window."""
    n, c, _, _ = x.shape
    sn, sc, sh, sw = x.strides
    shape = (n, c, out_hw[0], out_hw[1], k, k)
    strides = (sn, sc, sh * stride, sw * stride, sh, sw)
    return xp.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


def _out_size(size: int, k: int, stride: int, padding: int, what: str) -> int:
    out = (size + 2 * padding - k) // stride + 1
    if out < 1:
        raise ValueError(f"{what}: input size {size} is smaller than the kernel {k}")
    return out


class Conv2D(Module):
    """y[n, o] = sum over c, i, j of w[o, c, i, j] * x_padded[n, c, s*h + i, s*w + j] + b[o]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        init: str = "he",
        seed=0,
        dtype=np.float32,
        xp=np,
    ):
        self.k, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        if self.k < 1 or self.stride < 1 or self.padding < 0:
            raise ValueError(
                f"Conv2D needs kernel_size >= 1, stride >= 1, padding >= 0, got "
                f"{kernel_size}, {stride}, {padding}"
            )
        fan_in = in_channels * self.k * self.k
        w = init_weight(fan_in, out_channels, init, seed, dtype).T  # (out, in * k * k)
        w = w.reshape(out_channels, in_channels, self.k, self.k)
        self.weight = Parameter("weight", xp.asarray(np.ascontiguousarray(w)))
        self.bias = Parameter("bias", xp.zeros(out_channels, dtype=dtype))
        self._cols = self._shape = None

    def forward(self, x):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        if c != self.weight.data.shape[1]:
            raise ValueError(f"Conv2D expects {self.weight.data.shape[1]} channels, got {c}")
        ho = _out_size(h, self.k, self.stride, self.padding, "Conv2D")
        wo = _out_size(w, self.k, self.stride, self.padding, "Conv2D")
        p = self.padding
        xpad = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else xp.ascontiguousarray(x)
        win = _windows(xp, xpad, self.k, self.stride, (ho, wo))  # (n, c, ho, wo, k, k)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)  # one copy
        out_c = self.weight.data.shape[0]
        y = cols @ self.weight.data.reshape(out_c, -1).T + self.bias.data
        self._cols, self._shape = cols, (x.shape, xpad.shape, ho, wo)
        return y.reshape(n, ho, wo, out_c).transpose(0, 3, 1, 2)

    def backward(self, dout, input_grad: bool = True):
        xp = get_array_module(dout)
        cols = self._need_cache(self._cols)
        x_shape, pad_shape, ho, wo = self._shape
        out_c = self.weight.data.shape[0]
        dmat = dout.transpose(0, 2, 3, 1).reshape(-1, out_c)  # (n * ho * wo, out)
        self.weight.grad[...] = (dmat.T @ cols).reshape(self.weight.data.shape)
        xp.sum(dmat, axis=0, out=self.bias.grad)
        if not input_grad:
            return None
        n, c = x_shape[:2]
        k, s, p = self.k, self.stride, self.padding
        dcols = (dmat @ self.weight.data.reshape(out_c, -1)).reshape(n, ho, wo, c, k, k)
        dpad = xp.zeros(pad_shape, dtype=dout.dtype)
        for i in range(k):
            for j in range(k):
                rows, cols_ = slice(i, i + s * ho, s), slice(j, j + s * wo, s)
                dpad[:, :, rows, cols_] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dpad[:, :, p : p + x_shape[2], p : p + x_shape[3]] if p else dpad

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]


class MaxPool2D(Module):
    """The maximum of each k x k window (stride k unless given); gradient to the first max."""

    def __init__(self, kernel_size: int = 2, *, stride: int | None = None):
        self.k = int(kernel_size)
        self.stride = self.k if stride is None else int(stride)
        if self.k < 1 or self.stride < 1:
            raise ValueError(f"MaxPool2D needs kernel_size and stride >= 1, got {self.k}")
        self._arg = self._shape = None

    def forward(self, x):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        ho = _out_size(h, self.k, self.stride, 0, "MaxPool2D")
        wo = _out_size(w, self.k, self.stride, 0, "MaxPool2D")
        win = _windows(xp, xp.ascontiguousarray(x), self.k, self.stride, (ho, wo))
        flat = win.reshape(n, c, ho, wo, self.k * self.k)
        self._arg, self._shape = flat.argmax(axis=-1), x.shape
        return flat.max(axis=-1)

    def backward(self, dout, input_grad: bool = True):
        xp = get_array_module(dout)
        arg = self._need_cache(self._arg)
        _, _, ho, wo = arg.shape
        dx = xp.zeros(self._shape, dtype=dout.dtype)
        s = self.stride
        for i in range(self.k):
            for j in range(self.k):
                hit = (arg == i * self.k + j).astype(dout.dtype)
                dx[:, :, i : i + s * ho : s, j : j + s * wo : s] += dout * hit
        return dx


class Reshape(Module):
    """Each sample reshaped to `shape` (e.g. (1, 8, 8) for 64 features); Flatten is ()."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(int(d) for d in shape)
        self._in = None

    def forward(self, x):
        self._in = x.shape
        return x.reshape(x.shape[0], *(self.shape or (-1,)))

    def backward(self, dout, input_grad: bool = True):
        return dout.reshape(self._need_cache(self._in))


class Flatten(Reshape):
    """(N, ...) -> (N, features)."""

    def __init__(self):
        super().__init__(())


def cnn(
    image: tuple[int, int, int],
    num_classes: int,
    *,
    channels=(16, 32),
    hidden=(64,),
    activation: str = "relu",
    seed: int = 0,
    dtype=np.float32,
    xp=np,
) -> Sequential:
    """Flat features -> `image` (C, H, W) -> [3x3 conv, activation, 2x2 max pool] per
    entry of `channels` -> Flatten -> Dense `hidden` layers -> `num_classes` logits."""
    c, h, w = (int(d) for d in image)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    seeds = iter(child_seeds(seed, len(channels) + len(hidden) + 1))
    layers: list[Module] = [Reshape((c, h, w))]
    for out in channels:
        if min(h, w) < 2:
            raise ValueError(f"cnn: image {image} is too small for {len(channels)} pooling stages")
        layers += [Conv2D(c, out, 3, padding=1, seed=next(seeds), dtype=dtype, xp=xp)]
        layers += [ACTIVATIONS[activation](), MaxPool2D(2)]
        c, h, w = out, h // 2, w // 2
    layers.append(Flatten())
    sizes = [c * h * w, *hidden, num_classes]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Dense(n_in, n_out, seed=next(seeds), dtype=dtype, xp=xp))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return Sequential(*layers)


def square_image(num_features: int) -> tuple[int, int, int]:
    """(1, s, s) for s*s features (64 -> 1x8x8, 784 -> 1x28x28), else ValueError."""
    side = int(round(num_features**0.5))
    if side * side != num_features:
        raise ValueError(
            f"--model cnn needs square one-channel images: {num_features} features is not "
            "a square number"
        )
    return (1, side, side)
