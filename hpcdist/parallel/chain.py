"""A split model's part on one rank: layers in order that keep the unsplit model's names.

Each parameter this rank holds is a `Piece` of one parameter of the unsplit
model: where it sits in the unsplit parameter list, the whole array's shape,
the index range it covers, and whether this copy is the one that speaks for
it (a parameter every rank of a group holds, such as a row-parallel bias, has
one primary copy). Checkpoints and the equivalence harness join pieces back
into whole arrays (hpcdist.ckptfile.Shard).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ckptfile import Shard
from ..nn import Module, Parameter, Sequential


@dataclass(frozen=True)
class Piece:
    """param.data == whole[index] of the unsplit model's parameter number `position`."""

    param: Parameter
    position: int
    shape: tuple[int, ...]
    index: tuple[tuple[int, int], ...]
    primary: bool = True

    @classmethod
    def whole(cls, param: Parameter, position: int) -> Piece:
        shape = tuple(param.data.shape)
        return cls(param, position, shape, tuple((0, n) for n in shape))

    def slices(self) -> tuple[slice, ...]:
        """The index as slices, to cut this piece out of a whole array."""
        return tuple(slice(lo, hi) for lo, hi in self.index)

    def shard(self, group: str, name: str, data) -> Shard:
        """`data` (this piece's shape) as a checkpoint Shard of `group/name`."""
        return Shard(group, name, self.shape, self.index, data)


class Chain(Sequential):
    """nn.Sequential without renaming its layers' parameters: they keep the unsplit names."""

    def __init__(self, layers: list[Module], pieces: list[Piece]):
        self.layers = list(layers)  # Sequential.__init__ would prefix each name with its index
        self._pieces = list(pieces)
        names = [p.name for p in self.parameters()]
        if names != [pc.param.name for pc in self._pieces]:
            raise ValueError(f"Chain: pieces {self._pieces} do not describe parameters {names}")

    def pieces(self) -> list[Piece]:
        """One Piece per parameter, in parameters() order."""
        return list(self._pieces)
