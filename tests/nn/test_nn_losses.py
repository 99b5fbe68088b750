"""softmax_cross_entropy against a float64 reference and finite differences; evaluation sums."""

import math

import numpy as np
import pytest

from hpcdist import nn


def reference_losses(logits, labels):
    """Per-sample -log softmax(logits)[label], one row at a time with math.fsum in float64."""
    out = []
    for row, label in zip(np.asarray(logits, np.float64), labels, strict=True):
        m = max(row)
        out.append(m + math.log(math.fsum(math.exp(v - m) for v in row)) - row[label])
    return np.array(out)


def data(n=6, c=4, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * scale, rng.integers(0, c, n)


def test_loss_matches_reference_and_gradient_matches_finite_differences():
    logits, labels = data()
    loss, d = nn.softmax_cross_entropy(logits.copy(), labels)
    assert float(loss) == pytest.approx(reference_losses(logits, labels).mean(), rel=1e-12)
    h, num = 1e-6, np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        lp, lm = logits.copy(), logits.copy()
        lp[idx] += h
        lm[idx] -= h
        num[idx] = (reference_losses(lp, labels).mean() - reference_losses(lm, labels).mean()) / (
            2 * h
        )
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-9)


def test_weights_give_mean_over_weighted_samples():
    logits, labels = data(n=8)
    w = np.array([1, 1, 0, 1, 0, 0, 1, 1], np.float64)
    loss, d = nn.softmax_cross_entropy(logits, labels, weights=w)
    keep = w == 1
    ref_loss, ref_d = nn.softmax_cross_entropy(logits[keep], labels[keep])
    assert float(loss) == pytest.approx(
        reference_losses(logits[keep], labels[keep]).mean(), rel=1e-12
    )
    np.testing.assert_allclose(d[keep], ref_d, rtol=1e-12)
    assert not d[~keep].any()


def test_all_zero_weights_give_zero_loss_and_gradient():
    logits, labels = data()
    loss, d = nn.softmax_cross_entropy(logits, labels, weights=np.zeros(6))
    assert float(loss) == 0.0 and not d.any()


def test_stable_for_huge_logits_in_float32():
    logits, labels = data(scale=1e4)
    loss, d = nn.softmax_cross_entropy(logits.astype(np.float32), labels)
    assert np.isfinite(loss) and np.isfinite(d).all()
    assert loss.dtype == np.float32 and d.dtype == np.float32
    assert float(loss) == pytest.approx(reference_losses(logits, labels).mean(), rel=1e-4)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-6)


def test_evaluation_sums():
    logits, labels = data(n=10, c=3, seed=4)
    w = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    loss_sum, correct, count = nn.softmax_cross_entropy_sums(logits, labels, weights=w)
    keep = w == 1
    assert loss_sum == pytest.approx(reference_losses(logits[keep], labels[keep]).sum(), rel=1e-12)
    assert correct == sum(
        int(np.argmax(r) == t) for r, t in zip(logits[keep], labels[keep], strict=True)
    )
    assert count == 7
    assert nn.softmax_cross_entropy_sums(logits, labels)[2] == 10


def test_bad_inputs_are_rejected_with_clear_errors():
    logits, labels = data()
    with pytest.raises(ValueError, match="2-D"):
        nn.softmax_cross_entropy(logits[0], labels)
    with pytest.raises(ValueError, match="integer class indices"):
        nn.softmax_cross_entropy(logits, labels.astype(float))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        nn.softmax_cross_entropy(logits, labels + 4)
    with pytest.raises(ValueError, match="weights"):
        nn.softmax_cross_entropy(logits, labels, weights=np.ones(3))
