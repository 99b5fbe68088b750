"""The 16-bit wire casts: hpcdist's C loops (hpcdist/_casts.c) against numpy's own casts.

    python -m hpcdist.bench casts                 # 12.5M float32 (one rank's slice of 100 MB)
    python -m hpcdist.bench casts --elements 1e6 --repeat 21

Each row times one cast the exchange makes (encode: x * scale into 16 bits; decode-add:
16 bits back, times the factor, added to a float32 sum; the fp16 scale's largest
magnitude) through
Compressor.encode_into/decode_into/scale_for with the C loops and again with them off
(hpcdist.casts.AVAILABLE false: numpy and ml_dtypes), in alternation; best of --repeat.
"fp16 x bf16" compares the two formats' C rows, the target of issue 12 being <= 1.5x.
A plain float32 copy of the same array is the memory-speed reference. Every C result is
checked bit for bit against the numpy one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import casts
from ..compression import Compression


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _rows(comp, x, repeat: int) -> dict[str, tuple[float, float]]:
    """{cast: (C seconds, numpy seconds)}, each C result checked against numpy's."""
    scale = comp.scale_for(x)
    wire = np.empty(x.size, comp.wire_dtype(x.dtype))
    acc = np.ones(x.size, np.float32)
    work = {
        "encode": lambda: comp.encode_into(x, wire, scale),
        "decode-add": lambda: comp.decode_into(wire, acc, scale, add=True),
    }
    if comp.name == "fp16":
        work["scale (largest magnitude)"] = lambda: comp.scale_for(x)
    out = {}
    for name, fn in work.items():
        times = {}
        for fast in (True, False):
            casts.AVAILABLE = fast and casts._casts is not None
            times[fast] = _best(fn, repeat)
        out[name] = (times[True], times[False])
    casts.AVAILABLE = casts._casts is not None
    _check(comp, x, scale)
    return out


def _check(comp, x, scale: float) -> None:
    results = []
    for fast in (True, False):
        casts.AVAILABLE = fast and casts._casts is not None
        wire = np.empty(x.size, comp.wire_dtype(x.dtype))
        comp.encode_into(x, wire, scale)
        acc = np.ones(x.size, np.float32)
        comp.decode_into(wire, acc, scale, add=True)
        results.append((wire.view(np.uint16), acc.view(np.uint32), comp.scale_for(x)))
    casts.AVAILABLE = casts._casts is not None
    (w1, a1, s1), (w2, a2, s2) = results
    if not (np.array_equal(w1, w2) and np.array_equal(a1, a2) and s1 == s2):
        raise SystemExit(f"bench casts: the C {comp.name} casts differ from numpy's")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpcdist.bench casts", description=__doc__)
    p.add_argument("--elements", type=float, default=12.5e6)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    n = int(args.elements)
    if n < 1 or args.repeat < 1:
        p.error("--elements and --repeat must be at least 1")
    if casts._casts is None:
        print("hpcdist._casts is not built (no C compiler at install): numpy's casts only")
        return 1
    x = (np.random.default_rng(0).standard_normal(n) * 1e-3).astype(np.float32)
    dst = np.empty_like(x)
    copy = _best(lambda: np.copyto(dst, x), args.repeat)
    print(f"{n} float32 elements, best of {args.repeat}; F16C: {casts.USES_F16C}")
    print("| cast | format | C ms | numpy ms | C x numpy | C x float32 copy |")
    print("|---|---|---|---|---|---|")
    by_format = {}
    for name in ("bf16", "fp16"):
        by_format[name] = _rows(Compression.get(name), x, args.repeat)
        for cast, (fast, slow) in by_format[name].items():
            print(
                f"| {cast} | {name} | {fast * 1e3:.3g} | {slow * 1e3:.3g} | "
                f"{fast / slow:.2f} | {fast / copy:.2f} |"
            )
    print(f"| float32 copy (reference) | | {copy * 1e3:.3g} | | | 1.00 |")
    for cast in ("encode", "decode-add"):
        ratio = by_format["fp16"][cast][0] / by_format["bf16"][cast][0]
        print(f"fp16 x bf16, {cast} (C): {ratio:.2f}")
    total = {k: sum(v[0] for v in rows.values()) for k, rows in by_format.items()}
    print(
        f"fp16 x bf16, everything fp16 does (scale included): {total['fp16'] / total['bf16']:.2f}"
    )
    return 0
