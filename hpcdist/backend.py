"""Array-module helpers: numpy everywhere, cupy where it is installed and used."""

from __future__ import annotations

import numpy as np

_cupy = None
_cupy_checked = False


def cupy_or_none():
    """The cupy module, or None when it is not installed or cannot load CUDA."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy

            _cupy = cupy
        except Exception:  # ImportError, or a CUDA library missing at import
            _cupy = None
    return _cupy


def require_cupy():
    """cupy, or an ImportError that says how to get it."""
    cp = cupy_or_none()
    if cp is None:
        raise ImportError(
            "this needs cupy (GPU arrays); install it with `pip install hpcdist[gpu]` "
            "or the cupy wheel matching your CUDA, e.g. `pip install cupy-cuda12x`"
        )
    return cp


def is_cupy(x) -> bool:
    """True when x is a cupy array (without importing cupy for numpy input)."""
    return type(x).__module__.startswith("cupy")


def get_array_module(x):
    """numpy or cupy, whichever x belongs to."""
    return require_cupy() if is_cupy(x) else np


def to_numpy(x) -> np.ndarray:
    """A host copy of x (x itself when it is already a numpy array)."""
    return x.get() if is_cupy(x) else np.asarray(x)
