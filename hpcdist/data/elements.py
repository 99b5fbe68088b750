"""What a queue's elements are: component dtypes and shapes, checked and converted on enqueue.

Text components (`str`, `bytes`, or any numpy "U"/"S" dtype) are stored as
Python objects, so every string is kept whole (numpy's fixed-width "U1"
would cut "hello" to "h") and comes back in an object array.
"""

from __future__ import annotations

import numpy as np


def _as_list(x, k: int | None = None) -> list:
    if isinstance(x, (list, tuple)) and (k is None or len(x) == k):
        return list(x)
    return [x]


def _text_type(d) -> type | None:
    """str or bytes for a text dtype, else None."""
    kind = np.dtype(d).kind
    return str if kind == "U" else bytes if kind == "S" else None


def shape_ok(got: tuple, want: tuple) -> bool:
    """Whether shape `got` fits `want` (None matches any length)."""
    return len(got) == len(want) and all(
        w is None or g == w for g, w in zip(got, want, strict=False)
    )


class Components:
    """The k components of a queue's elements: storage dtypes, shapes (or None), text types.

    `dtypes` are the storage dtypes: object for text components (whose
    Python type is in `text`, None for the others).
    """

    def __init__(self, dtypes, shapes, name: str):
        given = _as_list(dtypes)
        self.name = name
        self.text = [_text_type(d) for d in given]
        self.dtypes = [
            np.dtype(object) if t is not None else np.dtype(d)
            for d, t in zip(given, self.text, strict=True)
        ]
        k = len(self.dtypes)
        if shapes is not None:
            listed = (
                isinstance(shapes, (list, tuple))
                and len(shapes) == k
                and all(isinstance(s, (list, tuple)) for s in shapes)
            )
            shapes = [tuple(s) for s in shapes] if listed else [tuple(shapes)] * (k == 1)
            if len(shapes) != k:
                raise ValueError(f"{k} dtypes but {len(shapes)} shapes")
        self.shapes = shapes

    def fills(self) -> list:
        """What padding holds per component: "" or b"" for text, 0 otherwise."""
        return [0 if t is None else t() for t in self.text]

    def check(self, values, many: bool) -> list[np.ndarray]:
        """One array per component of an element (many=False) or a batch of them (many=True)."""
        cols = [self.convert(v, i) for i, v in enumerate(self._split(values, many))]
        for i, c in enumerate(cols):
            shape = c.shape[1:] if many else c.shape
            if many and c.ndim == 0:
                raise ValueError(f"{self.name}: enqueue_many component {i} needs a batch axis")
            if self.shapes is not None and not shape_ok(shape, self.shapes[i]):
                raise ValueError(
                    f"{self.name}: component {i} expected shape {self.shapes[i]}, got {shape}"
                )
        if many and len({len(c) for c in cols}) > 1:
            raise ValueError(f"{self.name}: batch sizes differ: {[len(c) for c in cols]}")
        return cols

    def _split(self, values, many: bool) -> list:
        """The k component values: a list or tuple of k; with k == 1 also a bare value (TF1
        takes both: a list or tuple of one is unwrapped unless it fits as the value itself)."""
        k = len(self.dtypes)
        listed = isinstance(values, (list, tuple))
        if k > 1:
            if not listed or len(values) != k:
                got = len(values) if listed else type(values).__name__
                raise ValueError(f"{self.name}: expected a tuple of {k} components, got {got}")
            return list(values)
        if not listed or self._fits(values, many):
            return [values]
        if len(values) == 1:
            return [values[0]]
        raise ValueError(
            f"{self.name}: expected 1 component (a value of shape {self.shapes[0]}, or a list "
            f"or tuple of 1), got a {type(values).__name__} of {len(values)}"
        )

    def _fits(self, value, many: bool) -> bool:
        """Whether `value` itself has component 0's shape (always, with no shapes given)."""
        if self.shapes is None:
            return True
        try:
            shape = np.shape(value)
        except ValueError:  # ragged: not one array
            return False
        if many:
            shape = shape[1:] if shape else None
        return shape is not None and shape_ok(shape, self.shapes[0])

    def convert(self, v, i: int) -> np.ndarray:
        """Component i of an element as an array of the storage dtype, or ValueError."""
        if self.text[i] is not None:
            return self._text(v, i)
        want = self.dtypes[i]
        a = np.asarray(v)
        if a.dtype == want:
            return a
        rule = "safe" if isinstance(v, (np.ndarray, np.generic)) else "same_kind"
        if not np.can_cast(a.dtype, want, rule):
            raise ValueError(f"{self.name}: component {i} expected dtype {want}, got {a.dtype}")
        return a.astype(want)

    def _text(self, v, i: int) -> np.ndarray:
        kind = self.text[i]
        a = np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v.astype(object)
        bad = next((e for e in a.flat if not isinstance(e, kind)), None)
        if bad is not None:
            raise ValueError(
                f"{self.name}: component {i} expected {kind.__name__} elements, "
                f"got {type(bad).__name__} {bad!r}"
            )
        return a
