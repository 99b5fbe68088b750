"""Which parameter-server task holds which part of each parameter: greedy by bytes or round-robin.

    plan = shard_plan(shapes, num_ps=2, policy="greedy", itemsize=4)
    plan.pieces_of(p)     # [Piece(tensor, lo, hi, ps), ...] task p holds, in tensor order
    plan.bytes_per_ps()   # [bytes, ...]
    plan.imbalance()      # busiest / mean

A Piece is a range [lo, hi) of one tensor's flattened elements. "greedy"
splits every tensor above `chunk_bytes` into near-equal chunks (BytePS
partitions at 4,096,000 bytes) and gives each piece, largest first, to the
task with the fewest bytes so far; "round-robin" gives whole tensors to
tasks by count, as TF1's replica_device_setter did. `placement` (a function
(index, shape) -> task or None, or a list of device strings such as
"/job:ps/task:1") pins tensors first; `fixed` ({tensor: [(task, lo, hi), ...]},
the pieces a resource container already holds: held_pieces()) keeps those
tensors exactly as they are placed; the rest follow the policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

POLICIES = ("greedy", "round-robin")
#: Pieces above this many bytes are split over the ps tasks (BytePS's partition size).
DEFAULT_CHUNK_BYTES = 4_096_000


@dataclass(frozen=True)
class Piece:
    """Elements [lo, hi) of flattened tensor `tensor`, held by ps task `ps`."""

    tensor: int
    lo: int
    hi: int
    ps: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class ShardPlan:
    """Every piece of every tensor and the task that holds it (the same on every rank)."""

    shapes: tuple[tuple[int, ...], ...]
    num_ps: int
    itemsize: int
    pieces: tuple[Piece, ...]
    policy: str

    def pieces_of(self, ps: int) -> list[Piece]:
        """The pieces task `ps` holds, in (tensor, lo) order: the layout of its buffers."""
        return sorted((p for p in self.pieces if p.ps == ps), key=lambda p: (p.tensor, p.lo))

    def elements_of(self, ps: int) -> int:
        return sum(p.size for p in self.pieces if p.ps == ps)

    def bytes_per_ps(self) -> list[int]:
        return [self.elements_of(p) * self.itemsize for p in range(self.num_ps)]

    def imbalance(self) -> float:
        """Busiest task's bytes over the mean (1.0 is perfect balance)."""
        loads = self.bytes_per_ps()
        mean = sum(loads) / len(loads)
        return max(loads) / mean if mean else 1.0

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The map as int64 arrays (tensor, lo, hi, ps per piece), for checkpoints."""
        table = np.array([[p.tensor, p.lo, p.hi, p.ps] for p in self.pieces], np.int64)
        return {"ps_placement": table.reshape(-1, 4)}

    def describe(self, names: Sequence[str] | None = None) -> str:
        """One line per task: its bytes and the pieces it holds (for --log-device-placement)."""
        lines = []
        for ps, nbytes in enumerate(self.bytes_per_ps()):
            held = ", ".join(
                f"{names[p.tensor] if names else p.tensor}[{p.lo}:{p.hi}]"
                for p in self.pieces_of(ps)
            )
            lines.append(f"  /job:ps/task:{ps}  {nbytes} bytes: {held}")
        return "\n".join(lines)


def shard_plan(
    shapes: Sequence[Sequence[int]],
    num_ps: int,
    *,
    policy: str = "greedy",
    itemsize: int = 4,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    placement: Callable | Sequence[str | None] | None = None,
    fixed: dict[int, list[tuple[int, int, int]]] | None = None,
) -> ShardPlan:
    """Place every tensor of `shapes` (or its chunks) on one of `num_ps` tasks."""
    if policy not in POLICIES:
        raise ValueError(f"sharding policy must be one of {POLICIES}, got {policy!r}")
    if not isinstance(num_ps, int) or num_ps < 1:
        raise ValueError(f"num_ps must be an int >= 1, got {num_ps!r}")
    if chunk_bytes < itemsize:
        raise ValueError(f"chunk_bytes must be >= itemsize ({itemsize}), got {chunk_bytes}")
    shapes = tuple(tuple(int(n) for n in s) for s in shapes)
    sizes = [math.prod(s) for s in shapes]
    pinned = _pinned(placement, shapes, num_ps)
    fixed = _fixed(fixed or {}, sizes, num_ps)
    pieces = [Piece(t, lo, hi, ps) for t, held in sorted(fixed.items()) for ps, lo, hi in held]
    pieces += [
        Piece(t, 0, sizes[t], pinned[t])
        for t in range(len(shapes))
        if pinned[t] is not None and t not in fixed
    ]
    free = [t for t in range(len(shapes)) if pinned[t] is None and t not in fixed]
    if policy == "round-robin":
        pieces += [Piece(t, 0, sizes[t], i % num_ps) for i, t in enumerate(free)]
    else:
        pieces += _greedy(free, sizes, num_ps, itemsize, chunk_bytes, pieces)
    return ShardPlan(shapes, num_ps, itemsize, tuple(pieces), policy)


def _greedy(free, sizes, num_ps, itemsize, chunk_bytes, pinned) -> list[Piece]:
    """Split the large tensors, then largest piece first onto the least loaded task."""
    max_elems = max(1, chunk_bytes // itemsize)
    ranges = []
    for t in free:
        chunks = max(1, -(-sizes[t] // max_elems))
        bounds = [sizes[t] * k // chunks for k in range(chunks + 1)]
        ranges += [(t, bounds[k], bounds[k + 1]) for k in range(chunks)]
    ranges.sort(key=lambda r: (-(r[2] - r[1]), r[0], r[1]))  # largest first; ties in order
    load = [0] * num_ps
    for p in pinned:
        load[p.ps] += p.size
    out = []
    for t, lo, hi in ranges:
        ps = min(range(num_ps), key=lambda q: (load[q], q))
        load[ps] += hi - lo
        out.append(Piece(t, lo, hi, ps))
    return out


def _fixed(fixed: dict, sizes: list[int], num_ps: int) -> dict[int, list[tuple[int, int, int]]]:
    """Check that each fixed tensor's pieces cover its elements once, in order, on real tasks."""
    out = {}
    for t, held in fixed.items():
        if not 0 <= t < len(sizes):
            raise ValueError(f"fixed pieces name tensor {t}, but there are {len(sizes)} tensors")
        held = sorted(((int(ps), int(lo), int(hi)) for ps, lo, hi in held), key=lambda h: h[1])
        ends = [0] + [hi for _, _, hi in held]
        if [lo for _, lo, _ in held] != ends[:-1] or ends[-1] != sizes[t] or len(held) == 0:
            raise ValueError(
                f"the fixed pieces of tensor {t} {[(lo, hi) for _, lo, hi in held]} do not "
                f"cover its {sizes[t]} elements once each"
            )
        if any(not 0 <= ps < num_ps for ps, _, _ in held):
            raise ValueError(f"fixed pieces put tensor {t} on a task outside 0..{num_ps - 1}")
        out[t] = held
    return out


def held_pieces(held: list[list[tuple]], names, shapes, container: str) -> dict:
    """The fixed pieces for shard_plan from each ps task's answer (its keys (name, shape, lo,
    hi) of these variables in `container`); a variable whose held pieces do not cover it once
    each is placed afresh, with a warning that this model does not share it."""
    found: dict[tuple, list] = {}
    for ps, keys in enumerate(held):
        for name, shape, lo, hi in keys:
            found.setdefault((name, tuple(shape)), []).append((ps, lo, hi))
    sizes = [math.prod(shape) for shape in shapes]
    out = {}
    for t, (name, shape) in enumerate(zip(names, shapes, strict=True)):
        pieces = found.get((name, tuple(shape)))
        if pieces is None:
            continue
        try:
            _fixed({t: pieces}, sizes, len(held))
        except ValueError as err:
            print(
                f"hpcdist: container {container!r} holds variable {name!r} {tuple(shape)} in "
                f"pieces that do not fit ({err}); this model places it afresh and does not "
                "share it",
                flush=True,
            )
            continue
        out[t] = pieces
    return out


def _pinned(placement, shapes, num_ps) -> list[int | None]:
    """The task each tensor is pinned to by `placement` (None: the policy decides)."""
    if placement is None:
        return [None] * len(shapes)
    if callable(placement):
        wanted = [placement(i, s) for i, s in enumerate(shapes)]
    else:
        if len(placement) != len(shapes):
            raise ValueError(
                f"placement lists {len(placement)} device(s) for {len(shapes)} tensors"
            )
        wanted = [ps_task(d) if d is not None else None for d in placement]
    for i, task in enumerate(wanted):
        if task is not None and not (isinstance(task, int) and 0 <= task < num_ps):
            raise ValueError(
                f"placement puts tensor {i} on ps task {task!r}, but the tasks are 0..{num_ps - 1}"
            )
    return wanted


def ps_task(device: str) -> int | None:
    """The ps task a device string names ("/job:ps/task:1" -> 1), None for another job."""
    from ..devices import DeviceSpec

    spec = DeviceSpec.parse(device)
    if spec.job != "ps":
        return None
    return 0 if spec.task is None else int(spec.task)
