"""Resource containers on a ps task: named stores of variables that models in one job share.

    # on a ps rank (the seed's tf.container / Session.reset)
    containers.get("shared")      # the Container of that name (made on first use)
    containers.reset("shared")    # clear its values and shapes
    containers.names()
    binding = containers.Binding(box, [(key, lo, hi), ...])  # a model's pieces (server.py)
    binding.refresh(shard); binding.store(shard)             # before / after an update

A model's exchange names its container (`PsSyncExchange(roles, container="shared")`).
A variable is one piece of a tensor on this task, keyed (name, shape, lo, hi). The
first model to take a piece puts its value in; every later model, whether it runs
after the first or at the same time, starts from the stored value and writes its
updates back (ps/server.py), so models in one container share their variables and
models in different containers keep them apart. Each write bumps the piece's stamp,
so a server copies a piece back in only when another model changed it. Workers ask
for a reset with `exchange.reset_container(name)`.
"""

from __future__ import annotations

import numpy as np

#: This process's containers by name.
_CONTAINERS: dict[str, Container] = {}


class Container:
    """Variables by (name, shape, lo, hi): flat float arrays of a piece's elements, and stamps."""

    def __init__(self, name: str):
        self.name = name
        self.values: dict[tuple, np.ndarray | None] = {}  # None: reserved, no value yet
        self.stamps: dict[tuple, int] = {}
        self.writes = 0  # stamps are unique over the container's life, resets included

    def reserve(self, key: tuple) -> None:
        """Hold a place for `key` (its placement is fixed; its value comes with the first put)."""
        self.values.setdefault(key, None)

    def stamp(self, key: tuple) -> int | None:
        """The stamp of `key`'s stored value (None: no value)."""
        return self.stamps.get(key) if self.values.get(key) is not None else None

    def take(self, key: tuple, out: np.ndarray) -> int | None:
        """Copy the stored value of `key` into `out`; its stamp, or None when there is none."""
        value = self.values.get(key)
        if value is None or value.shape != out.shape:
            return None
        out[...] = value
        return self.stamps[key]

    def put(self, key: tuple, value: np.ndarray) -> int:
        """Store `value` as `key`'s value (in place where it has one); the new stamp."""
        held = self.values.get(key)
        if held is not None and held.shape == value.shape:
            held[...] = value
        else:
            self.values[key] = np.array(value, copy=True)
        self.writes += 1
        self.stamps[key] = self.writes
        return self.writes

    def held(self, variables) -> list[tuple]:
        """The keys held (valued or reserved) of the (name, shape) pairs in `variables`."""
        wanted = {(name, tuple(shape)) for name, shape in variables}
        return sorted(k for k in self.values if (k[0], k[1]) in wanted)

    def clear(self) -> None:
        self.values.clear()
        self.stamps.clear()

    def __len__(self) -> int:
        return sum(v is not None for v in self.values.values())


class Binding:
    """One model's pieces on this ps task, bound to a container (what ps/server.py calls).

    variables: (key, lo, hi) per piece, [lo, hi) its elements in the server's flat shard.
    The binding remembers the stamp it last synced of each piece, so `refresh` copies in only
    what another model wrote since."""

    def __init__(self, container: Container, variables: list[tuple]):
        self.container, self.variables = container, list(variables)
        self.seen: list[int | None] = [None] * len(self.variables)
        for key, _, _ in self.variables:
            container.reserve(key)

    def refresh(self, shard: np.ndarray, initial: bool = False) -> None:
        """Copy in each stored piece another model wrote since (initial: every stored one)."""
        for i, (key, lo, hi) in enumerate(self.variables):
            stamp = self.container.stamp(key)
            if stamp is not None and (initial or stamp != self.seen[i]):
                self.seen[i] = self.container.take(key, shard[lo:hi])

    def store(self, shard: np.ndarray, only_new: bool = False) -> None:
        """Write the pieces back (only_new: those the container holds no value of)."""
        for i, (key, lo, hi) in enumerate(self.variables):
            if not only_new or self.container.stamp(key) is None:
                self.seen[i] = self.container.put(key, shard[lo:hi])


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
