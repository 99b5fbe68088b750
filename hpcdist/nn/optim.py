"""SGD, Momentum and Adam updating `param.data` in place, with HDF5-friendly state dicts."""

from __future__ import annotations

import math

from ..backend import get_array_module, to_numpy
from .layers import Parameter


class Optimizer:
    """Base: holds the parameters, a settable `lr`, a step count and per-parameter buffers.

    Updates are in place on `param.data` and read `param.grad` without changing it, so
    gradients may live in (and parameters stay bound to) an exchange's buffers.
    """

    hyper: tuple[str, ...] = ("lr",)
    slots: tuple[str, ...] = ()  # names of per-parameter state arrays

    def __init__(self, params, lr: float):
        self.params: list[Parameter] = list(params)
        if not self.params or not all(isinstance(p, Parameter) for p in self.params):
            raise TypeError(
                "optimizer needs a non-empty list of Parameter (e.g. model.parameters())"
            )
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr!r}")
        self.lr = float(lr)
        self.steps = 0
        self.state = {s: [_zeros(p) for p in self.params] for s in self.slots}
        self._scratch = [_zeros(p) for p in self.params]

    def step(self) -> None:
        """Apply one update to every parameter."""
        self.steps += 1
        for i, p in enumerate(self.params):
            self._update(i, p, get_array_module(p.data))

    def _update(self, i: int, p: Parameter, xp) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.fill(0)

    def state_dict(self) -> dict:
        """Hyper-parameters, step count and host copies of the state arrays (no pickles)."""
        out = {"kind": type(self).__name__, "steps": self.steps}
        out.update({h: getattr(self, h) for h in self.hyper})
        for s in self.slots:
            out.update({f"{s}.{i}": to_numpy(a).copy() for i, a in enumerate(self.state[s])})
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore from state_dict() output; arrays are copied into the existing buffers."""
        kind = state.get("kind")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind != type(self).__name__:
            raise ValueError(f"load_state_dict: state is for {kind}, not {type(self).__name__}")
        for s in self.slots:
            for i, a in enumerate(self.state[s]):
                src = state.get(f"{s}.{i}")
                if src is None or tuple(src.shape) != a.shape:
                    raise ValueError(f"load_state_dict: missing or misshapen entry '{s}.{i}'")
                a[...] = get_array_module(a).asarray(src, dtype=a.dtype)
        self.steps = int(state["steps"])
        for h in self.hyper:
            value = state[h]
            setattr(self, h, bool(value) if isinstance(getattr(self, h), bool) else float(value))

    def _decayed_grad(self, i: int, p: Parameter, xp):
        """grad + weight_decay * data (into scratch), or grad itself without decay."""
        wd = getattr(self, "weight_decay", 0.0)
        if not wd:
            return p.grad
        s = self._scratch[i]
        xp.multiply(p.data, wd, out=s)
        s += p.grad
        return s


def _zeros(p: Parameter):
    return get_array_module(p.data).zeros_like(p.data)


class SGD(Optimizer):
    """data -= lr * (grad + weight_decay * data)."""

    hyper = ("lr", "weight_decay")

    def __init__(self, params, lr: float, *, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.weight_decay = float(weight_decay)

    def _update(self, i, p, xp):
        g = self._decayed_grad(i, p, xp)
        s = self._scratch[i]
        xp.multiply(g, self.lr, out=s)
        p.data -= s


class Momentum(SGD):
    """Heavy-ball momentum as in PyTorch: v = mu*v + g; data -= lr*v (Nesterov: lr*(g + mu*v))."""

    hyper = ("lr", "momentum", "nesterov", "weight_decay")
    slots = ("velocity",)

    def __init__(
        self,
        params,
        lr: float,
        *,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        super().__init__(params, lr, weight_decay=weight_decay)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def _update(self, i, p, xp):
        g = self._decayed_grad(i, p, xp)
        v, s = self.state["velocity"][i], self._scratch[i]
        v *= self.momentum
        v += g
        if self.nesterov:  # data -= lr*g, then data -= lr*mu*v
            xp.multiply(g, self.lr, out=s)
            p.data -= s
            xp.multiply(v, self.lr * self.momentum, out=s)
        else:
            xp.multiply(v, self.lr, out=s)
        p.data -= s


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight_decay adds an L2 term to the gradient."""

    hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")
    slots = ("m", "v")

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        *,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        super().__init__(params, lr)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps, self.weight_decay = float(eps), float(weight_decay)

    def _update(self, i, p, xp):
        g = self._decayed_grad(i, p, xp)
        m, v, s = self.state["m"][i], self.state["v"][i], self._scratch[i]
        m *= self.beta1
        m += (1 - self.beta1) * g if g is s else xp.multiply(g, 1 - self.beta1, out=s)
        v *= self.beta2
        xp.multiply(g, g, out=s)
        s *= 1 - self.beta2
        v += s
        bc1 = 1 - self.beta1**self.steps
        bc2 = 1 - self.beta2**self.steps
        xp.sqrt(v, out=s)  # denominator sqrt(v / bc2) + eps, as in PyTorch
        s *= 1 / math.sqrt(bc2)
        s += self.eps
        xp.divide(m, s, out=s)
        s *= self.lr / bc1
        p.data -= s
