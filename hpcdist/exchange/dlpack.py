"""Arrays from any DLPack producer (PyTorch, JAX, ...) in and out, as zero-copy views."""

from __future__ import annotations

import importlib

import numpy as np

from ..backend import is_cupy

_CPU, _CUDA = 1, 2  # DLPack device types


def is_foreign(x) -> bool:
    """x is neither numpy nor cupy but can hand its memory over with DLPack."""
    return not (isinstance(x, np.ndarray) or is_cupy(x)) and hasattr(x, "__dlpack__")


def to_array(x, index: int = 0):
    """A numpy (CPU) or cupy (CUDA) view of the DLPack producer x, sharing its memory."""
    if callable(getattr(x, "detach", None)):
        x = x.detach()  # a tensor that requires grad: the same memory, exportable
    try:
        kind = x.__dlpack_device__()[0]
        if kind == _CUDA:
            import cupy

            return cupy.from_dlpack(x)
        if kind != _CPU:
            raise TypeError(f"DLPack device type {kind} (neither CPU nor CUDA)")
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError) as exc:
        raise TypeError(
            f"array {index}: {type(x).__module__}.{type(x).__name__} could not be shared "
            f"through DLPack ({exc}); pass a detached, contiguous tensor"
        ) from exc


def _importer(x):
    """The producer library's from_dlpack (torch.from_dlpack, jax.dlpack.from_dlpack, ...)."""
    top = importlib.import_module(type(x).__module__.split(".")[0])
    fn = getattr(top, "from_dlpack", None) or getattr(
        getattr(top, "dlpack", None), "from_dlpack", None
    )
    if fn is None:
        raise TypeError(f"{top.__name__} has no from_dlpack: cannot hand results back to it")
    return fn


def convert(items: list) -> tuple[list, object]:
    """(numpy/cupy arrays, back): `back(arrays)` turns results into the producer's type.

    Lists with no DLPack producer come back as they are, and `back` is None.
    """
    if not any(is_foreign(x) for x in items):
        return items, None
    arrays = [to_array(x, i) if is_foreign(x) else x for i, x in enumerate(items)]
    makers = [_importer(x) if is_foreign(x) else None for x in items]

    def back(results: list) -> list:
        return [r if m is None else m(r) for r, m in zip(results, makers, strict=True)]

    return arrays, back
