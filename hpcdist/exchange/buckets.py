"""Tensor fusion: lay gradients out in per-dtype slabs and cut the slabs into buckets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Byte alignment of every tensor, slab and bucket boundary (a cache line).
ALIGN_BYTES = 64

#: Default bucket size, chosen with `python -m hpcdist.bench allreduce --sweep-buckets
#: ... --repeat N` on the dev machine (docs/benchmarks.md, "Bucket size from repeated runs").
DEFAULT_BUCKET_BYTES = 4 << 20


def align(n: int, to: int = ALIGN_BYTES) -> int:
    """n rounded up to a multiple of `to`."""
    return -(-n // to) * to


@dataclass
class Slab:
    """One dtype's gradients, back to back, at `offset` bytes into a rank's region."""

    dtype: np.dtype
    offset: int
    size: int  # elements, padding included
    params: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # element offset of each param

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass
class Bucket:
    """A range [start, stop) of one slab's elements that is reduced as one piece."""

    index: int
    slab: int
    start: int
    stop: int
    params: list[int]

    @property
    def size(self) -> int:
        return self.stop - self.start


class BucketLayout:
    """Where each gradient lives and how the slabs are cut into buckets.

    Parameters are placed in reverse order (backward produces the last layer's
    gradients first, as in PyTorch DDP), grouped by dtype. Buckets are element
    ranges, so re-cutting them (autotune) never moves a gradient.
    """

    def __init__(self, shapes: list[tuple], dtypes: list, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.where: list[tuple[int, int]] = [(-1, -1)] * len(shapes)  # (slab, element start)
        self.slabs: list[Slab] = []
        by_dtype: dict[np.dtype, Slab] = {}
        for i in reversed(range(len(shapes))):
            dt = self.dtypes[i]
            if dt not in by_dtype:
                by_dtype[dt] = Slab(dt, 0, 0)
                self.slabs.append(by_dtype[dt])
            slab = by_dtype[dt]
            self.where[i] = (self.slabs.index(slab), slab.size)
            slab.params.append(i)
            slab.starts.append(slab.size)
            slab.size += align(self.sizes[i] * dt.itemsize, ALIGN_BYTES) // dt.itemsize
        offset = 0
        for slab in self.slabs:
            slab.offset = offset
            offset += align(slab.nbytes)
        self.nbytes = offset
        self.buckets: list[Bucket] = []
        self.cut(bucket_bytes)

    def cut(self, bucket_bytes: int) -> list[Bucket]:
        """(Re)cut every slab into buckets of about `bucket_bytes`."""
        if bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
        self.bucket_bytes = int(bucket_bytes)
        buckets = []
        for s, slab in enumerate(self.slabs):
            step = max(ALIGN_BYTES, align(bucket_bytes)) // slab.dtype.itemsize
            ends = np.array(slab.starts[1:] + [slab.size])
            for lo in range(0, slab.size, step):
                hi = min(lo + step, slab.size)
                # params overlapping [lo, hi)
                spans = zip(slab.params, slab.starts, ends, strict=True)
                members = [p for p, a, b in spans if a < hi and b > lo]
                buckets.append(Bucket(len(buckets), s, lo, hi, members))
        self.buckets = buckets
        return buckets

    def view(self, region: np.ndarray, i: int) -> np.ndarray:
        """Parameter i's gradient as a view into a rank's byte region."""
        s, start = self.where[i]
        return self.slab_view(region, s)[start : start + self.sizes[i]].reshape(self.shapes[i])

    def slab_view(self, region: np.ndarray, s: int) -> np.ndarray:
        """Slab s of a rank's byte region, as its dtype."""
        slab = self.slabs[s]
        return region[slab.offset : slab.offset + slab.nbytes].view(slab.dtype)

    def wire_nbytes(self, itemsize: int) -> int:
        """Bytes of the wire area that holds every slab at `itemsize` bytes an element."""
        return sum(align(slab.size * itemsize) for slab in self.slabs)

    def wire_view(self, area: np.ndarray, s: int, dtype) -> np.ndarray:
        """Slab s of a wire area (laid out like wire_nbytes), as `dtype`."""
        dtype = np.dtype(dtype)
        offset = sum(align(slab.size * dtype.itemsize) for slab in self.slabs[:s])
        return area[offset : offset + self.slabs[s].size * dtype.itemsize].view(dtype)
