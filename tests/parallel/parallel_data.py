"""Shared inputs of the parallel tests: a float64 batch and the unsplit reference models."""

import numpy as np

from hpcdist import nn

#: An uneven split at 3 ranks (100 -> 34, 33, 33) and at 4 (50 -> 13, 13, 12, 12).
UNEVEN = [64, 100, 50, 10]
#: Enough Dense layers for a pipeline of up to 5 stages.
DEEP = [64, 30, 20, 20, 16, 10]


def batch(n: int = 13, features: int = 64, classes: int = 10, seed: int = 0):
    """(x, y): a float64 batch, the same on every rank."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)), rng.integers(0, classes, n)


def net(sizes, seed: int = 3, dropout: float = 0.0):
    """The unsplit float64 model, the same on every rank."""
    return nn.mlp(sizes, seed=seed, dropout=dropout, dtype=np.float64)
