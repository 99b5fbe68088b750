"""The equivalence harness: a split model's output, loss and every parameter gradient
against the unsplit model's, on the same batch.

    net = nn.mlp([64, 100, 50, 10], seed=3, dtype=np.float64)
    part = parallel.tensor_split(net, guard)          # or parallel.PipelineModel(net, guard, ...)
    report = parallel.compare(net, part, x, y, guard)  # collective over guard's ranks
    report.raise_if_failed(rtol=1e-10, atol=1e-12)     # EquivalenceError naming what differs

As torch.distributed.pipelining's tests do: the unsplit model (run here on
every rank, unchanged) is the reference; the split model's gradients are
joined from every rank's pieces into whole arrays (hpcdist.ckptfile.assemble,
which also refuses pieces that overlap or leave a gap).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import to_numpy
from ..ckptfile import assemble
from ..errors import HpcdistError
from ..nn import Module, Sequential, softmax_cross_entropy


class EquivalenceError(HpcdistError, AssertionError):
    """A split model computed something other than its unsplit model."""


@dataclass
class Difference:
    """Largest absolute difference and the reference's largest magnitude."""

    max_abs: float
    scale: float

    def within(self, rtol: float, atol: float) -> bool:
        return self.max_abs <= atol + rtol * self.scale


@dataclass
class EquivalenceReport:
    """Differences between the split and the unsplit model (the same on every rank).

    `output`: the logits in evaluation mode; `loss` and `grads`: one training pass
    (dropout, where the model has it, draws the same masks in both).
    """

    output: Difference
    loss: Difference
    grads: dict[str, Difference] = field(default_factory=dict)

    def failures(self, rtol: float = 1e-10, atol: float = 1e-12) -> list[str]:
        items = {"output": self.output, "loss": self.loss, **self.grads}
        return [
            f"{name}: max |difference| {d.max_abs:.3g} against magnitude {d.scale:.3g}"
            for name, d in items.items()
            if not d.within(rtol, atol)
        ]

    def raise_if_failed(self, rtol: float = 1e-10, atol: float = 1e-12) -> None:
        bad = self.failures(rtol, atol)
        if bad:
            raise EquivalenceError(
                f"the split model differs from the unsplit one (rtol {rtol:g}, atol {atol:g}): "
                + "; ".join(bad)
            )


def _difference(got, want) -> Difference:
    got, want = np.asarray(to_numpy(got), np.float64), np.asarray(to_numpy(want), np.float64)
    if got.shape != want.shape:
        return Difference(float("inf"), float(np.abs(want).max(initial=0.0)))
    return Difference(float(np.abs(got - want).max(initial=0.0)), float(np.abs(want).max()))


def _evaluated(model: Module, x):
    """Logits in evaluation mode (no dropout draws), the model left in training mode."""
    model.eval()
    try:
        return to_numpy(model.forward(x)).copy()
    finally:
        model.train()


def reference(net: Sequential, x, y) -> tuple:
    """(evaluation logits, training loss, {name: gradient}) of the unsplit model on (x, y)."""
    logits = _evaluated(net, x)
    loss, dlogits = softmax_cross_entropy(net.forward(x), y)
    net.backward(dlogits, input_grad=False)
    return logits, float(loss), {p.name: to_numpy(p.grad).copy() for p in net.parameters()}


def split_result(part: Module, x, y) -> tuple:
    """(evaluation logits, training loss) of a split model, its gradients in its parameters."""
    logits = _evaluated(part, x)
    if hasattr(part, "train_batch"):  # a pipeline runs forward and backward together
        return logits, part.train_batch(x, y)
    loss, dlogits = softmax_cross_entropy(part.forward(x), y)
    part.backward(dlogits, input_grad=False)
    return logits, float(loss)


def whole_gradients(part: Module, guard) -> dict[str, np.ndarray]:
    """Every parameter's whole gradient, joined from each rank's pieces (collective)."""
    mine = [pc.shard("grads", pc.param.name, to_numpy(pc.param.grad)) for pc in part.pieces()]
    mine = [s for s, pc in zip(mine, part.pieces(), strict=True) if pc.primary]
    every = guard.allgather(mine, what="every rank's gradient pieces")
    return assemble([s for shards in every for s in shards]).get("grads", {})


def compare(net: Sequential, part: Module, x, y, guard) -> EquivalenceReport:
    """Run both models on (x, y) and report their differences (collective over guard)."""
    logits, loss, grads = reference(net, x, y)
    got_logits, got_loss = split_result(part, x, y)
    got_grads = whole_gradients(part, guard)
    diffs = {name: _difference(got_grads.get(name, np.zeros(0)), g) for name, g in grads.items()}
    for name in sorted(set(got_grads) - set(grads)):
        diffs[name] = Difference(float("inf"), 0.0)  # a parameter the unsplit model lacks
    return EquivalenceReport(_difference(got_logits, logits), _difference(got_loss, loss), diffs)
