"""Softmax cross-entropy with optional per-sample weights, and its evaluation sums."""

from __future__ import annotations

from ..backend import get_array_module


def _check(logits, labels, weights):
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (batch, classes), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be integer class indices of shape ({logits.shape[0]},), "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if weights is not None and weights.shape != (logits.shape[0],):
        raise ValueError(f"weights must have shape ({logits.shape[0]},), got {weights.shape}")
    xp = get_array_module(logits)
    if (
        xp.__name__ == "numpy"
        and labels.size
        and (labels.min() < 0 or labels.max() >= logits.shape[1])
    ):
        raise ValueError(
            f"labels must lie in [0, {logits.shape[1]}), got {labels.min()}..{labels.max()}"
        )
    return xp


def _log_softmax_parts(xp, logits, labels):
    """(shifted logits z, log-sum-exp of z, z at the label), stable for any range."""
    z = logits - logits.max(axis=1, keepdims=True)
    lse = xp.log(xp.exp(z).sum(axis=1))
    picked = xp.take_along_axis(z, labels[:, None].astype(xp.intp), axis=1)[:, 0]
    return z, lse, picked


def softmax_cross_entropy(logits, labels, weights=None):
    """Mean cross-entropy of softmax(logits) against integer `labels`, and d(loss)/d(logits).

    With `weights` (e.g. a 0/1 mask for padded rows), the loss is the weighted mean
    sum(w_i * loss_i) / sum(w_i); a batch whose weights sum to 0 has loss 0 and zero
    gradient. Returns (loss as a 0-d array of the logits' dtype, dlogits).
    """
    xp = _check(logits, labels, weights)
    z, lse, picked = _log_softmax_parts(xp, logits, labels)
    losses = lse - picked
    dlogits = z  # reuse z's memory: softmax(z) - onehot(labels)
    xp.exp(z - lse[:, None], out=dlogits)
    rows = xp.arange(logits.shape[0])
    dlogits[rows, labels] -= 1
    if weights is None:
        n = max(logits.shape[0], 1)
        dlogits *= logits.dtype.type(1.0 / n)
        return losses.sum() / logits.dtype.type(n), dlogits
    w = weights.astype(logits.dtype, copy=False)
    total = w.sum()
    scale = w / xp.maximum(total, logits.dtype.type(1e-30))  # 0 when every weight is 0
    dlogits *= scale[:, None]
    return (losses * scale).sum(), dlogits


def softmax_cross_entropy_sums(logits, labels, weights=None) -> tuple[float, float, float]:
    """(sum of per-sample losses, number of correct argmax predictions, number of samples).

    Rows are weighted by `weights` when given (a 0/1 mask drops padded rows). Sum these
    over ranks (one allreduce of three numbers) and divide to get the global mean loss
    and accuracy.
    """
    xp = _check(logits, labels, weights)
    _, lse, picked = _log_softmax_parts(xp, logits, labels)
    losses = (lse - picked).astype(xp.float64)
    correct = (logits.argmax(axis=1) == labels).astype(xp.float64)
    if weights is None:
        return float(losses.sum()), float(correct.sum()), float(logits.shape[0])
    w = weights.astype(xp.float64)
    return float((losses * w).sum()), float((correct * w).sum()), float(w.sum())
