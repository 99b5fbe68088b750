"""Layers with explicit forward/backward over numpy or cupy arrays (xp-generic)."""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module, to_numpy
from .init import child_seeds, init_weight


class Parameter:
    """A trainable array `data` and its gradient `grad` (same shape, dtype, device)."""

    __slots__ = ("name", "data", "grad")

    def __init__(self, name: str, data):
        self.name = name
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base layer: forward(x) -> y caches what backward(dout) -> dx needs.

    backward OVERWRITES each `param.grad` in place (it never rebinds it and never
    accumulates), so gradients land directly in arrays bound by `bind_grads`.
    """

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout, input_grad: bool = True):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def parameters(self) -> list[Parameter]:
        return []

    def modules(self) -> list[Module]:
        return [self]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def bind_grads(self, arrays) -> None:
        """Make each param.grad the given array (e.g. a view into a fused buffer)."""
        params = self.parameters()
        arrays = list(arrays)
        if len(arrays) != len(params):
            raise ValueError(f"bind_grads: expected {len(params)} arrays, got {len(arrays)}")
        for p, a in zip(params, arrays, strict=True):
            if type(a) is not type(p.data) or a.shape != p.data.shape or a.dtype != p.data.dtype:
                raise ValueError(
                    f"bind_grads: {p.name} needs a {type(p.data).__name__} of shape "
                    f"{p.data.shape} and dtype {p.data.dtype}, got {type(a).__name__} "
                    f"of shape {getattr(a, 'shape', None)} and dtype {getattr(a, 'dtype', None)}"
                )
        for p, a in zip(params, arrays, strict=True):
            p.grad = a

    def state_dict(self) -> dict:
        """Host copies of the parameters and dropout RNG states ('2.rng.pcg64', ...) by name."""
        state = {p.name: to_numpy(p.data).copy() for p in self.parameters()}
        for m in self.modules():
            if isinstance(m, Dropout):
                state.update({f"{m.name}.{k}": v for k, v in m.get_rng_state().items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters and RNG states from `state` into this module, in place."""
        for p in self.parameters():
            if p.name not in state or np.shape(state[p.name]) != p.data.shape:
                raise ValueError(f"load_state_dict: missing or misshapen entry {p.name!r}")
            p.data[...] = get_array_module(p.data).asarray(state[p.name], dtype=p.data.dtype)
        for m in self.modules():
            if isinstance(m, Dropout):
                prefix = m.name + "."
                m.set_rng_state(
                    {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                )

    def _need_cache(self, value):
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return value


class Sequential(Module):
    """Layers applied in order; parameter names become '<index>.<name>'."""

    def __init__(self, *layers: Module):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, not a Module")
            for p in layer.parameters():
                p.name = f"{i}.{p.name}"
            for m in layer.modules():
                if isinstance(m, Dropout):
                    m.name = f"{i}.{m.name}"

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout, input_grad: bool = True, on_ready=None):
        """Gradients of all layers; input_grad=False skips d(loss)/d(input) (returns None).

        on_ready(k), when given, is called for each parameter (k: its index in
        parameters()) as soon as its layer's backward is done, last layer first, so an
        exchange can start moving those gradients while the earlier layers still work.
        """
        counts = [len(layer.parameters()) for layer in self.layers] if on_ready else []
        end = sum(counts)
        for i in range(len(self.layers) - 1, -1, -1):
            dout = self.layers[i].backward(dout, input_grad=input_grad or i > 0)
            if on_ready is not None:
                for k in reversed(range(end - counts[i], end)):
                    on_ready(k)
                end -= counts[i]
        return dout

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def modules(self) -> list[Module]:
        return [self] + [m for layer in self.layers for m in layer.modules()]


class Dense(Module):
    """y = x @ W + b with W of shape (in_features, out_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        init: str = "he",
        seed=0,
        dtype=np.float32,
        xp=np,
    ):
        w = init_weight(in_features, out_features, init, seed, dtype)
        self.weight = Parameter("weight", xp.asarray(w))
        self.bias = Parameter("bias", xp.zeros(out_features, dtype=dtype))
        self._x = None

    def forward(self, x):
        xp = get_array_module(x)
        self._x = x
        y = xp.matmul(x, self.weight.data)
        y += self.bias.data
        return y

    def backward(self, dout, input_grad: bool = True):
        xp = get_array_module(dout)
        x = self._need_cache(self._x)
        xp.matmul(x.T, dout, out=self.weight.grad)
        xp.sum(dout, axis=0, out=self.bias.grad)
        return xp.matmul(dout, self.weight.data.T) if input_grad else None

    def parameters(self) -> list[Parameter]:
        return [self.weight, self.bias]


class ReLU(Module):
    """max(x, 0)."""

    _y = None

    def forward(self, x):
        self._y = y = get_array_module(x).maximum(x, 0)
        return y

    def backward(self, dout, input_grad: bool = True):
        return dout * (self._need_cache(self._y) > 0)


class ELU(Module):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)
        self._x = self._y = None

    def forward(self, x):
        xp = get_array_module(x)
        neg = xp.expm1(xp.minimum(x, 0))
        neg *= x.dtype.type(self.alpha)
        self._x, self._y = x, xp.where(x > 0, x, neg)
        return self._y

    def backward(self, dout, input_grad: bool = True):
        xp = get_array_module(dout)
        x = self._need_cache(self._x)
        return dout * xp.where(x > 0, x.dtype.type(1), self._y + x.dtype.type(self.alpha))


class Tanh(Module):
    """tanh(x)."""

    _y = None

    def forward(self, x):
        self._y = y = get_array_module(x).tanh(x)
        return y

    def backward(self, dout, input_grad: bool = True):
        y = self._need_cache(self._y)
        return dout * (1 - y * y)


_IDENTITY = object()  # Dropout's mask when it passes its input through


class Dropout(Module):
    """Inverted dropout: in training, zero each unit with probability `rate`, scale by 1/(1-rate).

    The mask is drawn on the host from a seeded numpy PCG64 Generator, so it is the same
    on CPU and GPU, and `get_rng_state`/`set_rng_state` give an exact resume.
    """

    def __init__(self, rate: float, seed=0):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.name = "rng"  # state_dict key prefix; Sequential prepends the layer index
        self.rng = np.random.default_rng(seed)
        self._mask = None

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            self._mask = _IDENTITY
            return x
        xp = get_array_module(x)
        keep = self.rng.random(x.shape, dtype=np.float32) >= np.float32(self.rate)
        self._mask = mask = xp.asarray(keep, dtype=x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - self.rate))
        return x * mask

    def backward(self, dout, input_grad: bool = True):
        mask = self._need_cache(self._mask)
        return dout if mask is _IDENTITY else dout * mask

    def get_rng_state(self) -> dict:
        """{"pcg64": the generator state as 6 uint64 words} (`hpcdist.rng`; HDF5-storable)."""
        from ..rng import state_words

        return {"pcg64": state_words(self.rng)}

    def set_rng_state(self, state: dict) -> None:
        """Restore a state from get_rng_state (or the older 4 words + has_uint32 + uinteger)."""
        from ..rng import set_state_words

        try:
            words = np.asarray(state["pcg64"], dtype=np.uint64).ravel()
            if len(words) == 4:  # checkpoints written before hpcdist.rng
                words = np.r_[words, np.uint64(state["has_uint32"]), np.uint64(state["uinteger"])]
            set_state_words(self.rng, words)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ValueError(f"Dropout.set_rng_state: not a state from get_rng_state ({e})") from e


ACTIVATIONS = {"relu": ReLU, "elu": ELU, "tanh": Tanh}


def mlp(
    sizes,
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int = 0,
    init: str | None = None,
    dtype=np.float32,
    xp=np,
) -> Sequential:
    """Dense layers of the given sizes with `activation` (and Dropout) between them.

    The default init is He for relu/elu and Glorot for tanh. Every Dense and Dropout
    gets its own seed derived from `seed`, so one seed fixes the whole model.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp sizes must be >= 2 positive ints, got {sizes!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    init = init or ("glorot" if activation == "tanh" else "he")
    seeds = child_seeds(seed, 2 * (len(sizes) - 1))
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(Dense(n_in, n_out, init=init, seed=seeds[2 * i], dtype=dtype, xp=xp))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(Dropout(dropout, seed=seeds[2 * i + 1]))
    return Sequential(*layers)
