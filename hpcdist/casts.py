"""16-bit casts of host arrays through the C loops of hpcdist/_casts.c, where they are built.

    casts.encode(x, out, scale)           # out = 16-bit(x * scale); False: not handled here
    casts.decode(wire, out, factor, add)  # out (+)= float32(wire) * factor; False: not handled
    casts.absmax(x)                       # max |x| in one pass (NaN if any); None: not here
    casts.AVAILABLE, casts.USES_F16C

The results are bitwise numpy's (the float32 product, then round to nearest
even; NaN stays a NaN), at memory speed: numpy's own float32<->float16 casts
take 1.4-2.8 ns an element on the 2-core dev VM, F16C about 0.1
(docs/benchmarks.md). Only C-contiguous float32 <-> float16/bfloat16 pairs
take this path; anything else (float64, strided views, cupy) returns False
and the caller uses numpy. `pip install -e .` builds the extension where a C
compiler is found (setup.py: optional); HPCDIST_FAST_CASTS=0 turns it off.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from . import _casts
except ImportError:  # built without a C compiler: numpy's casts
    _casts = None

AVAILABLE = _casts is not None and os.environ.get("HPCDIST_FAST_CASTS", "1") != "0"
USES_F16C = bool(AVAILABLE and _casts.uses_f16c())


def _kind(dtype) -> str | None:
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return "f16"
    if dtype.itemsize == 2 and dtype.name == "bfloat16":
        return "bf16"
    return None


def _fits(a) -> bool:
    return isinstance(a, np.ndarray) and a.flags.c_contiguous


def _loop(wide, narrow, names):
    """The C cast between `wide` (float32) and `narrow` (16 bits), or None where numpy has
    to do it (no extension, another dtype, a strided view, different shapes)."""
    if not AVAILABLE or not (_fits(wide) and _fits(narrow)) or wide.shape != narrow.shape:
        return None
    kind = _kind(narrow.dtype)
    if kind is None or wide.dtype != np.float32:
        return None
    return getattr(_casts, names[kind])


def encode(x, out, scale: float = 1.0) -> bool:
    """out[...] = x * scale in out's 16-bit dtype; False (nothing done) if not handled here."""
    cast = _loop(x, out, {"f16": "f32_to_f16", "bf16": "f32_to_bf16"})
    if cast is not None:
        cast(x, out.view(np.uint16), float(scale))
    return cast is not None


def decode(wire, out, factor: float = 1.0, add: bool = False) -> bool:
    """out[...] = wire * factor in float32 (or out += it); False if not handled here."""
    cast = _loop(out, wire, {"f16": "f16_to_f32", "bf16": "bf16_to_f32"})
    if cast is not None:
        cast(wire.view(np.uint16), out, float(factor), bool(add))
    return cast is not None


def absmax(x) -> float | None:
    """The largest magnitude of float32 array x in one pass (NaN if x holds one); None where
    numpy has to do it."""
    if not AVAILABLE or not _fits(x) or x.dtype != np.float32 or x.size == 0:
        return None
    return _casts.f32_absmax(x)
