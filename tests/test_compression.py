"""Wire compressors: round trips against float64, fp16 range scaling, bf16 rounding."""

import ml_dtypes
import numpy as np
import pytest

from hpcdist.compression import Compression, Compressor


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_none_is_identity():
    x = np.arange(5, dtype=np.float32)
    wire, ctx = Compression.none.compress(x)
    assert wire is x and Compression.none.decompress(wire, ctx) is x
    assert Compression.none.wire_itemsize is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fp16_round_trip(dtype):
    x = np.random.default_rng(0).standard_normal(10000).astype(dtype)
    wire, ctx = Compression.fp16.compress(x)
    assert wire.dtype == np.float16 and wire.nbytes == x.size * 2
    back = Compression.fp16.decompress(wire, ctx)
    assert back.dtype == dtype
    assert _rel(back, x) <= 2.0**-11


def test_fp16_scales_large_and_tiny_values_instead_of_inf_or_zero():
    big = np.array([1e6, -3e5, 70000.0, 1.0], np.float32)
    wire, ctx = Compression.fp16.compress(big)
    assert np.isfinite(wire).all() and ctx[1] < 1.0
    np.testing.assert_allclose(Compression.fp16.decompress(wire, ctx), big, rtol=1e-3)
    tiny = np.array([3e-7, -1e-6, 2e-8], np.float32)  # fp16 subnormal or zero without scaling
    wire, ctx = Compression.fp16.compress(tiny)
    assert ctx[1] > 1.0
    np.testing.assert_allclose(Compression.fp16.decompress(wire, ctx), tiny, rtol=1e-3)
    assert float(np.log2(ctx[1])).is_integer()  # a power of two: scaling adds no rounding


def test_fp16_passes_nonfinite_through():
    x = np.array([1.0, np.inf, np.nan], np.float32)
    back = Compression.fp16.decompress(*Compression.fp16.compress(x))
    assert back[0] == 1.0 and np.isinf(back[1]) and np.isnan(back[2])


def test_bf16_round_trip_matches_ml_dtypes_rounding():
    x = np.random.default_rng(1).standard_normal(10000).astype(np.float32) * 1e30
    wire, ctx = Compression.bf16.compress(x)
    assert wire.dtype == ml_dtypes.bfloat16 and wire.nbytes == x.size * 2
    back = Compression.bf16.decompress(wire, ctx)
    assert back.dtype == np.float32 and _rel(back, x) <= 2.0**-8
    # round to nearest even, the same as an independent bit-level reference
    u = x.view(np.uint32).astype(np.uint64)
    ref = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(back, ref)


def test_integer_arrays_pass_uncompressed():
    x = np.arange(4)
    for comp in (Compression.fp16, Compression.bf16):
        wire, ctx = comp.compress(x)
        assert wire is x and comp.decompress(wire, ctx) is x


def test_get_by_name_and_errors():
    assert Compression.get("bf16") is Compression.bf16
    assert Compression.get(None) is Compression.none
    assert isinstance(Compression.get(Compression.fp16), Compressor)
    with pytest.raises(ValueError, match="fp16"):
        Compression.get("int8")


@pytest.mark.parametrize("name", ["none", "fp16", "bf16"])
def test_decode_into_is_decode_bit_for_bit(name):
    """In place (the exchange's sums) equals decode then copy or add, over several pieces."""
    comp = Compression.get(name)
    x = np.random.default_rng(5).standard_normal(200_003).astype(np.float32)
    base = np.random.default_rng(6).standard_normal(x.size).astype(np.float32)
    wire, ctx = comp.compress(x)
    scale = 1.0 if ctx is None else ctx[1]
    if name == "fp16":
        assert scale != 1.0  # the scaled branch is the one exercised
    # float64 reference: a 16-bit value over a power of two is exact in float32
    plain = (np.asarray(wire, np.float64) / scale).astype(np.float32)
    np.testing.assert_array_equal(comp.decode(wire, np.float32, scale), plain)
    out = np.full_like(x, np.nan)
    np.testing.assert_array_equal(comp.decode_into(wire, out, scale), plain)
    summed = base.copy()
    comp.decode_into(wire, summed, scale, add=True)
    np.testing.assert_array_equal(summed, base + plain)


@pytest.mark.parametrize("name", ["none", "fp16", "bf16"])
def test_encode_into_writes_the_rounded_product_in_place(name):
    """One pass into the wire area equals the float64 product rounded once to the wire dtype
    (a power-of-two scale is exact), and encode() equals it too."""
    comp = Compression.get(name)
    x = np.random.default_rng(7).standard_normal(100_001).astype(np.float32) * 1e-3
    scale = comp.scale_for(x)
    wire_dtype = comp.wire_dtype(x.dtype)
    ref = (x.astype(np.float64) * scale).astype(wire_dtype)
    out = np.zeros(x.size, wire_dtype)
    assert comp.encode_into(x, out, scale) is out
    np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))
    encoded = np.asarray(comp.encode(x, scale))
    np.testing.assert_array_equal(encoded.view(np.uint8), ref.view(np.uint8))


@pytest.mark.gpu
def test_bf16_on_gpu_matches_host():
    import cupy as cp

    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    wire, ctx = Compression.bf16.compress(cp.asarray(x))
    back = Compression.bf16.decompress(wire, ctx)
    host = Compression.bf16.decompress(*Compression.bf16.compress(x))
    np.testing.assert_array_equal(cp.asnumpy(back), host)
    back16 = Compression.fp16.decompress(*Compression.fp16.compress(cp.asarray(x)))
    np.testing.assert_allclose(cp.asnumpy(back16), x, rtol=1e-3)
