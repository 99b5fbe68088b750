"""PaddingFIFOQueue: a FIFO whose batches pad variable dimensions to the batch maximum."""

from __future__ import annotations

import numpy as np

from .queues import QueueBase
from .stores import ListStore


class PaddingFIFOQueue(QueueBase):
    """FIFO whose batches pad None dimensions with zeros to the batch maximum.

    With `return_lengths=True`, dequeue_many/dequeue_up_to also return, after
    the k components, one int64 array (n, ndim) per component holding each
    element's true shape; a mask is `arange(L) < lengths[:, j]`.
    """

    def __init__(
        self, capacity, dtypes, shapes, *, timeout=None, name=None, return_lengths: bool = False
    ):
        if shapes is None:
            raise ValueError("PaddingFIFOQueue needs shapes (None marks a padded dimension)")
        super().__init__(capacity, dtypes, shapes, timeout=timeout, name=name)
        self.return_lengths = return_lengths

    def _make_store(self):
        return ListStore(self._dtypes)

    def dequeue_many(self, n, timeout=None):
        return self._padded(self._take(self._check_n(n), False, timeout, "dequeue_many"))

    def dequeue_up_to(self, n, timeout=None):
        return self._padded(self._take(self._check_n(n), True, timeout, "dequeue_up_to"))

    def _remove(self, n: int) -> tuple:
        return self._store.take_front(n, assemble=False)

    def dequeue(self, timeout=None):
        elems = self._take(1, False, timeout, "dequeue")
        return self._bare(elems[0])

    def _padded(self, elems: list):
        arrays, lengths = pad_elements(elems, self._dtypes, self._shapes, self._elements.fills())
        out = tuple(arrays) + (tuple(lengths) if self.return_lengths else ())
        return out[0] if len(out) == 1 else out


def pad_elements(elems: list, dtypes, shapes, fills=None) -> tuple[list, list]:
    """Batch elements, padding None dimensions with zeros to the batch maximum.

    Returns (arrays, lengths): lengths[i] is an int64 (n, ndim) array of each
    element's true shape in component i. `fills[i]` is what pads component i
    (default 0; "" or b"" for text).
    """
    fills = fills or [0] * len(dtypes)
    arrays, lengths = [], []
    for i, (d, s, fill) in enumerate(zip(dtypes, shapes, fills, strict=True)):
        parts = [e[i] for e in elems]
        true = np.array([p.shape for p in parts], dtype=np.int64).reshape(len(parts), len(s))
        top = true.max(axis=0) if len(parts) else np.zeros(len(s), np.int64)
        full = tuple(int(t) if w is None else w for t, w in zip(top, s, strict=True))
        out = np.full((len(parts), *full), fill, dtype=d)
        for j, p in enumerate(parts):
            out[(j, *(slice(0, n) for n in p.shape))] = p if p.ndim else p[()]
        arrays.append(out)
        lengths.append(true)
    return arrays, lengths
