"""Which rank's input held NaN or inf, when the averaged gradients did (the error names it)."""

from __future__ import annotations

import numpy as np

from .errors import NonFiniteGradientError


def name_nonfinite_input(guard, x, error: NonFiniteGradientError, where: str, records=None):
    """The error again, saying which ranks' batches hold NaN/inf, in which rows and, where
    `records` (a callable: [(file, record)]) finds them, in which files and records.

    Collective over `guard` (every rank saw the same non-finite sum and calls
    this). `where` says which batch it was ("epoch 2, step 31"). Only a rank whose
    batch holds NaN/inf calls `records` (a scan of its share of the data).
    """
    xp_any = x.reshape(len(x), -1) if len(x) else x.reshape(0, 1)
    finite = np.asarray(_to_numpy(_isfinite(xp_any)).all(axis=1))
    rows = np.flatnonzero(~finite)[:5].tolist()
    found = records() if rows and records is not None else []
    every = guard.allgather((guard.rank, rows, found), what="which ranks' input held NaN or inf")
    bad = {r: (rs, fs) for r, rs, fs in every if rs}
    if not bad:
        why = "no rank's input batch holds NaN or inf: the model or the learning rate made them"
    else:
        why = "; ".join(
            f"rank {r}'s input batch holds NaN or inf in row(s) {rs}" + _where(fs)
            for r, (rs, fs) in bad.items()
        )
    return NonFiniteGradientError(f"{error} [{where}: {why}]")


def _where(found) -> str:
    if not found:
        return ""
    listed = ", ".join(f"{path} record {row}" for path, row in found)
    return f" (its share of the data holds them at {listed}; records count from 0)"


def _isfinite(x):
    xp = np if isinstance(x, np.ndarray) else __import__("cupy")
    return xp.isfinite(x)


def _to_numpy(x):
    return x if isinstance(x, np.ndarray) else x.get()
