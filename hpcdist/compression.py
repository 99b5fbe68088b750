"""Wire compression for gradient exchange: compress(x) -> (wire, ctx); decompress(wire, ctx)."""

from __future__ import annotations

import math

import numpy as np

from . import casts
from .backend import get_array_module, is_cupy

#: fp16 contributions are scaled by a power of two so that their largest
#: magnitude lands at or below this (fp16 max is 65504): no finite value
#: becomes inf, and small gradients stay out of the subnormal range.
FP16_TARGET_MAX = 2.0**14
#: Elements decoded at a time by decode_into when a scale applies (stays in cache).
DECODE_PIECE = 1 << 16


class Compressor:
    """Turns a float array into its wire form and back; the sum is always taken wider.

    `compress`/`decompress` are the public pair. The exchange uses the parts:
    `scale_for(x)` (a power of two, agreed per contribution), `encode(x, scale)`
    and `decode(wire, dtype, scale)`.
    """

    name = "none"
    wire_itemsize: int | None = None  # None: the wire keeps the array's dtype

    def wire_dtype(self, dtype):
        """The dtype of the wire form of an array of `dtype`."""
        return np.dtype(dtype)

    def scale_for(self, x) -> float:
        """A power-of-two factor applied before the cast (1.0 where the range is fine)."""
        return 1.0

    def encode(self, x, scale: float = 1.0):
        """x * scale in the wire dtype (a new array)."""
        return x

    def decode(self, wire, dtype, scale: float = 1.0):
        """The wire array back in `dtype`, divided by scale (a new array)."""
        return wire

    def encode_into(self, x, out, scale: float = 1.0):
        """out[...] = encode(x, scale): on the host in one pass (the product is cast as it
        is written), without a temporary the size of `x`."""
        if is_cupy(x) or is_cupy(out) or np.dtype(out.dtype).kind in "iu":  # bits
            out[...] = self.encode(x, scale)
        elif casts.encode(x, out, scale):  # float32 -> 16 bits in C where it is built
            pass
        elif scale == 1.0:
            np.copyto(out, x, casting="unsafe")
        else:
            np.multiply(x, x.dtype.type(scale), out=out, casting="unsafe")
        return out

    def decode_into(self, wire, out, scale: float = 1.0, add: bool = False):
        """out = decode(wire, out.dtype, scale), or out += it: on the host without a
        temporary the size of `wire` (cast on the fly, or in cache-sized pieces)."""
        if is_cupy(out) or is_cupy(wire) or np.dtype(wire.dtype).kind in "iu":  # bits
            value = self.decode(wire, out.dtype, scale)
            if add:
                out += value
            else:
                out[...] = value
            return out
        if casts.decode(wire, out, 1.0 / scale, add):  # 16 bits -> float32 in C
            return out
        if scale == 1.0:
            if add:
                np.add(out, wire, out=out, casting="unsafe")
            else:
                np.copyto(out, wire, casting="unsafe")
            return out
        factor = out.dtype.type(1.0 / scale)
        if not add:
            np.multiply(wire, factor, out=out, dtype=out.dtype)
            return out
        piece = np.empty(min(DECODE_PIECE, out.size), dtype=out.dtype)
        for lo in range(0, out.size, DECODE_PIECE):
            hi = min(lo + DECODE_PIECE, out.size)
            np.multiply(wire[lo:hi], factor, out=piece[: hi - lo], dtype=out.dtype)
            out[lo:hi] += piece[: hi - lo]
        return out

    def compress(self, x):
        """Return (wire, ctx): the wire array and what decompress needs to undo it."""
        if self.wire_itemsize is None or np.dtype(x.dtype).kind != "f":
            return x, None
        scale = self.scale_for(x)
        return self.encode(x, scale), (x.dtype, scale)

    def decompress(self, wire, ctx):
        """Return the array compress() was given, up to rounding."""
        return wire if ctx is None else self.decode(wire, *ctx)


class FP16Compressor(Compressor):
    """IEEE half precision with a power-of-two scale per contribution (no silent inf)."""

    name = "fp16"
    wire_itemsize = 2

    def wire_dtype(self, dtype):
        return np.dtype(np.float16)

    def scale_for(self, x) -> float:
        if x.size == 0:
            return 1.0
        top = casts.absmax(x)  # one pass in C where it applies
        if top is None:
            xp = get_array_module(x)
            top = max(abs(float(xp.max(x))), abs(float(xp.min(x))))
        if not math.isfinite(top) or top == 0.0:
            return 1.0  # inf/nan travel as themselves and are reported after the sum
        return 2.0 ** math.floor(math.log2(FP16_TARGET_MAX / top))

    def encode(self, x, scale: float = 1.0):
        xp = get_array_module(x)
        if is_cupy(x):
            return (x * x.dtype.type(scale) if scale != 1.0 else x).astype(xp.float16)
        return self.encode_into(x, np.empty(x.shape, np.float16), scale)

    def decode(self, wire, dtype, scale: float = 1.0):
        if is_cupy(wire):
            out = wire.astype(dtype)
            if scale != 1.0:
                out *= np.dtype(dtype).type(1.0 / scale)
            return out
        return self.decode_into(wire, np.empty(wire.shape, dtype), scale)


class BF16Compressor(Compressor):
    """bfloat16 (float32's range, 8 bits of mantissa); ml_dtypes on the host, bit ops on GPU."""

    name = "bf16"
    wire_itemsize = 2

    def wire_dtype(self, dtype):
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)

    def encode(self, x, scale: float = 1.0):
        if not is_cupy(x):  # the C loop where it applies (casts.py), else ml_dtypes
            return self.encode_into(x, np.empty(x.shape, self.wire_dtype(x.dtype)), scale)
        if scale != 1.0:
            x = x * x.dtype.type(scale)
        xp = get_array_module(x)  # cupy has no bfloat16: round-to-nearest-even on the bits
        u = x.astype(xp.float32).view(xp.uint32)
        u = u + xp.uint32(0x7FFF) + ((u >> 16) & xp.uint32(1))
        return (u >> 16).astype(xp.uint16)

    def decode(self, wire, dtype, scale: float = 1.0):
        if not is_cupy(wire):
            wire = wire.view(self.wire_dtype(dtype)) if wire.dtype.kind in "iu" else wire
            return self.decode_into(wire, np.empty(wire.shape, dtype), scale)
        xp = get_array_module(wire)
        out = (wire.view(xp.uint16).astype(xp.uint32) << 16).view(xp.float32).astype(dtype)
        if scale != 1.0:
            out *= np.dtype(dtype).type(1.0 / scale)
        return out


class Compression:
    """The compressors, Horovod-style: `Compression.none`, `.fp16`, `.bf16`."""

    none = Compressor()
    fp16 = FP16Compressor()
    bf16 = BF16Compressor()

    @classmethod
    def get(cls, value) -> Compressor:
        """A Compressor from an instance or its name ("none", "fp16", "bf16")."""
        if isinstance(value, Compressor):
            return value
        if value is None:
            return cls.none
        if isinstance(value, str) and value.lower() in ("none", "fp16", "bf16"):
            return getattr(cls, value.lower())
        raise ValueError(
            f"compression must be Compression.none/fp16/bf16 or its name, got {value!r}"
        )
