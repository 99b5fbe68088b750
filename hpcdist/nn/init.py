"""Seeded He/Glorot initialisation, drawn on the host so every rank and device agrees."""

from __future__ import annotations

import numpy as np

INITS = ("he", "glorot")


def child_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """n independent seed sequences derived from one integer seed."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.SeedSequence(int(seed)).spawn(n)


def init_weight(fan_in: int, fan_out: int, init: str, seed, dtype=np.float32) -> np.ndarray:
    """A (fan_in, fan_out) host array: He normal or Glorot uniform, from `seed`.

    Drawn in float64 by numpy's PCG64 Generator and then cast, so the same seed
    gives bit-identical weights on every rank and on CPU and GPU.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    rng = np.random.default_rng(seed)
    if init == "he":
        w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    else:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
    return w.astype(dtype)
