"""A stand-in for cupy on machines without a GPU: numpy arrays that must cross to the host
with .get()/.set() and refuse to be mixed with numpy arrays in arithmetic, as cupy does."""

from types import SimpleNamespace

import numpy as np


class ndarray(np.ndarray):  # noqa: N801 - cupy's name
    """Device array: arithmetic with a host (numpy) array raises, as in cupy."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        arrays = list(inputs) + list(out or ())
        for a in arrays:
            if type(a) is np.ndarray and a.ndim > 0:
                raise TypeError(f"fake cupy: {ufunc.__name__} mixes a device and a host array")
        plain = [a.view(np.ndarray) if isinstance(a, ndarray) else a for a in inputs]
        if out is not None:
            kw["out"] = tuple(o.view(np.ndarray) for o in out)
        result = getattr(ufunc, method)(*plain, **kw)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result.view(ndarray) if isinstance(result, np.ndarray) else result

    def get(self, stream=None, order="C", out=None, blocking=True):
        host = self.view(np.ndarray)
        if out is None:
            return host.copy()
        if type(out) is not np.ndarray or out.shape != self.shape or out.dtype != self.dtype:
            raise ValueError(f"get(out=): need a host array {self.shape} {self.dtype}")
        out[...] = host
        return out

    def set(self, arr, stream=None):
        if type(arr) is not np.ndarray or arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"set(): need a host array {self.shape} {self.dtype}")
        self.view(np.ndarray)[...] = arr


ndarray.__module__ = "cupy"  # hpcdist.backend.is_cupy looks at the module name


def _dev(a):
    return np.asarray(a).view(ndarray)


def make_module():
    """The fake module, to be put in sys.modules['cupy']."""
    registered = []
    cp = SimpleNamespace(
        ndarray=ndarray,
        zeros=lambda *a, **k: _dev(np.zeros(*a, **k)),
        empty=lambda *a, **k: _dev(np.empty(*a, **k)),
        asarray=lambda a, dtype=None: _dev(np.array(a, dtype=dtype, copy=True)),
        array=lambda a, dtype=None, copy=True: _dev(np.array(np.asarray(a), dtype=dtype)),
        asnumpy=lambda a: np.array(a.view(np.ndarray)),
        isfinite=lambda a: _dev(np.isfinite(a.view(np.ndarray))),
        max=lambda a: np.max(a.view(np.ndarray)),
        min=lambda a: np.min(a.view(np.ndarray)),
        float16=np.float16,
        float32=np.float32,
        uint16=np.uint16,
        uint32=np.uint32,
        registered=registered,
    )
    cp.cuda = SimpleNamespace(
        runtime=SimpleNamespace(
            hostRegister=lambda ptr, size, flags: registered.append(ptr),
            hostUnregister=lambda ptr: registered.remove(ptr),
        ),
        get_current_stream=lambda: SimpleNamespace(synchronize=lambda: None),
    )
    return cp
