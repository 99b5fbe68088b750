"""Resource containers on a ps task: named stores of variables that models in one job share.

    # on a ps rank (the seed's tf.container / Session.reset)
    containers.get("shared")      # the Container of that name (made on first use)
    containers.reset("shared")    # clear its values and shapes
    containers.names()

A model's exchange names its container (`PsSyncExchange(roles, container="shared")`);
the ps task starts each of its pieces from the container's value of the same variable
(name, shape and element range) where there is one, else from the workers' initial
values, and puts its pieces back when the model's workers are done. Models in one
container share their variables; models in different containers keep them apart.
Workers ask for a reset with `exchange.reset_container(name)`.
"""

from __future__ import annotations

import numpy as np

#: This process's containers by name.
_CONTAINERS: dict[str, Container] = {}


class Container:
    """Variables by (name, shape, lo, hi): flat float arrays of a piece's elements."""

    def __init__(self, name: str):
        self.name = name
        self.values: dict[tuple, np.ndarray] = {}

    def take(self, key: tuple, out: np.ndarray) -> bool:
        """Copy the stored value of `key` into `out`; False when there is none."""
        value = self.values.get(key)
        if value is None or value.shape != out.shape:
            return False
        out[...] = value
        return True

    def put(self, key: tuple, value: np.ndarray) -> None:
        self.values[key] = np.array(value, copy=True)

    def clear(self) -> None:
        self.values.clear()

    def __len__(self) -> int:
        return len(self.values)


def get(name: str) -> Container:
    """The container called `name` (created empty on first use)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a container needs a non-empty name, got {name!r}")
    return _CONTAINERS.setdefault(name, Container(name))


def reset(name: str) -> int:
    """Clear container `name`'s values and shapes; how many variables it held."""
    box = _CONTAINERS.get(name)
    held = len(box) if box is not None else 0
    if box is not None:
        box.clear()  # in place: a model being served in it sees the reset too
    return held


def names() -> list[str]:
    return sorted(_CONTAINERS)
