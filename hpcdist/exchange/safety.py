"""Exchange safety: list fingerprints, deadlines, an arrival check that names missing ranks."""

from __future__ import annotations

import math

import numpy as np

# The deadline, the wait loop and the arrival check are the guarded-collective layer's.
from ..arrival import ArrivalCheck, fingerprint  # noqa: F401  (re-exported)
from ..deadline import EXCHANGE_TIMEOUT_ENV as TIMEOUT_ENV  # noqa: F401  (re-exported)
from ..deadline import Deadline, default_timeout, wait_requests  # noqa: F401  (re-exported)


def describe(arrays, op: str, compression: str) -> list[str]:
    """One line per tensor ('float32 (64, 3, 3)') plus the op and compression."""
    lines = [f"op={op} compression={compression} count={len(arrays)}"]
    lines += [f"{np.dtype(a.dtype).name} {tuple(a.shape)}" for a in arrays]
    return lines


def signature(arrays, op: str, compression: str) -> tuple:
    """What must agree across ranks, cheap to build: ((shape, dtype code), ...), op, compression."""
    return tuple((a.shape, a.dtype.str) for a in arrays), op, compression


def is_finite_sum(x) -> bool:
    """False when x holds NaN or inf (a sum is cheap; an overflowing sum is rechecked)."""
    if x.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(x.sum(dtype=x.dtype))):  # numpy or cupy
            return True
    xp = np if isinstance(x, np.ndarray) else __import__("cupy")
    return bool(xp.isfinite(x).all())


def check_options(op: str, check_every: int, on_timeout: str) -> None:
    """ValueError naming the AllreduceExchange option that is out of range."""
    if op not in ("sum", "average"):
        raise ValueError(f"op must be 'sum' or 'average', got {op!r}")
    if check_every < 0:
        raise ValueError(f"check_every must be >= 0 (0: only at attach), got {check_every}")
    if on_timeout not in ("abort", "raise"):
        raise ValueError(f"on_timeout must be 'abort' or 'raise', got {on_timeout!r}")
