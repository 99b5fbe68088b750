"""The C 16-bit casts (hpcdist/_casts.c) are bitwise numpy's, on F16C and on the portable loops."""

import ml_dtypes
import numpy as np
import pytest

from hpcdist import casts
from hpcdist.compression import Compression

_casts = pytest.importorskip("hpcdist._casts", reason="built without a C compiler: numpy casts")

BF16 = np.dtype(ml_dtypes.bfloat16)


@pytest.fixture(params=["f16c", "portable"])
def loops(request):
    """Run a test on the F16C loops (where the CPU has them) and on the portable ones."""
    if request.param == "f16c" and not _casts.set_f16c(True):
        pytest.skip("this CPU has no F16C")
    if request.param == "portable":
        _casts.set_f16c(False)
    yield request.param
    _casts.set_f16c(True)


def _patterns() -> np.ndarray:
    """float32 bit patterns: every 97th over the range half precision rounds in (including
    its subnormals, the overflow edge and the halfway cases), random ones, and the specials."""
    dense = np.arange(0x32000000, 0x47900000, 97, dtype=np.uint32)
    rand = np.random.default_rng(3).integers(0, 1 << 32, 1 << 20, dtype=np.uint64)
    halves = np.arange(1 << 16, dtype=np.uint32)
    # exact halfway points between neighbouring normal halves: mantissa ...1000000000000
    ties = ((halves & 0x7BFF) + (112 << 10)) << 13 | 0x1000
    special = np.array(
        [
            0,
            0x80000000,
            0x7F800000,
            0xFF800000,
            0x7FC00000,
            0x477FE000,
            0x477FEFFF,
            0x477FF000,
            0x33000000,
            0x33000001,
            0x387FE000,
        ],
        np.uint32,
    )
    both = np.concatenate([dense, rand.astype(np.uint32), ties.astype(np.uint32), special])
    return np.concatenate([both, both ^ np.uint32(0x80000000)])


def _same_bits(got, want):
    """Equal bits, except that a NaN only has to stay a NaN."""
    g, w = got.astype(np.float32), want.astype(np.float32)
    nan = np.isnan(w)
    assert np.isnan(g[nan]).all()
    bits = 2 if got.dtype.itemsize == 2 else 4
    view = {2: np.uint16, 4: np.uint32}[bits]
    mismatch = np.flatnonzero(got.view(view)[~nan] != want.view(view)[~nan])
    assert mismatch.size == 0, f"{mismatch.size} differ, first {got[~nan][mismatch[:3]]}"


@pytest.mark.parametrize("scale", [1.0, 2.0**-3, 2.0**7])
def test_f32_to_f16_is_numpys_cast_of_the_product(loops, scale):
    x = _patterns().view(np.float32)
    with np.errstate(all="ignore"):
        want = (x * np.float32(scale)).astype(np.float16)
    got = np.empty(x.size, np.float16)
    _casts.f32_to_f16(x, got.view(np.uint16), scale)
    _same_bits(got, want)


@pytest.mark.parametrize("wire", [np.float16, BF16], ids=["f16", "bf16"])
@pytest.mark.parametrize("add", [False, True])
def test_every_16_bit_code_decodes_as_numpy_does(loops, wire, add):
    codes = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(wire)
    factor = np.float32(2.0**-5)
    base = np.linspace(-3, 3, codes.size, dtype=np.float32)
    with np.errstate(all="ignore"):
        want = codes.astype(np.float32) * factor
        if add:
            want = base + want
    got = base.copy()
    cast = _casts.f16_to_f32 if wire == np.float16 else _casts.bf16_to_f32
    cast(codes.view(np.uint16), got, float(factor), add)
    _same_bits(got, want)


@pytest.mark.parametrize("scale", [1.0, 2.0**-3])
def test_f32_to_bf16_is_ml_dtypes_rounding(scale):
    x = _patterns().view(np.float32)
    with np.errstate(all="ignore"):
        want = (x * np.float32(scale)).astype(BF16)
    got = np.empty(x.size, BF16)
    _casts.f32_to_bf16(x, got.view(np.uint16), scale)
    _same_bits(got, want)


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_the_compressors_give_the_same_bits_with_and_without_the_c_loops(name, monkeypatch):
    comp = Compression.get(name)
    x = (np.random.default_rng(5).standard_normal(100_003) * 1e-3).astype(np.float32)
    scale = comp.scale_for(x)
    fast, acc_fast = np.empty(x.size, comp.wire_dtype(x.dtype)), np.ones(x.size, np.float32)
    comp.encode_into(x, fast, scale)
    comp.decode_into(fast, acc_fast, scale, add=True)
    monkeypatch.setattr(casts, "AVAILABLE", False)
    slow, acc_slow = np.empty_like(fast), np.ones(x.size, np.float32)
    comp.encode_into(x, slow, scale)
    comp.decode_into(slow, acc_slow, scale, add=True)
    np.testing.assert_array_equal(fast.view(np.uint16), slow.view(np.uint16))
    np.testing.assert_array_equal(acc_fast.view(np.uint32), acc_slow.view(np.uint32))


def test_what_the_c_loops_do_not_take_goes_to_numpy():
    x = np.ones(10, np.float32)
    out = np.empty(10, np.float16)
    assert casts.encode(x, out) is casts.AVAILABLE  # the plain case is taken
    assert not casts.encode(x.astype(np.float64), out)  # float64: numpy's cast
    assert not casts.encode(x[::2], out[:5])  # strided
    assert not casts.decode(out, np.empty(10, np.float64))
    with pytest.raises(ValueError, match="the lengths differ"):
        _casts.f32_to_f16(x, np.empty(9, np.uint16), 1.0)


def test_absmax_is_the_largest_magnitude_in_one_pass():
    x = _patterns().view(np.float32)
    finite = x[np.isfinite(x)]
    for a in (finite, finite[:1001], -np.abs(finite[:13]), np.float32([0.0, -0.0])):
        want = max(abs(float(a.max())), abs(float(a.min())))
        assert casts.absmax(a) == want
    with_inf = finite.copy()
    with_inf[len(with_inf) // 2] = -np.inf
    assert casts.absmax(with_inf) == np.inf
    for at in (0, 5, len(finite) - 3):  # a NaN in the vector part and in the tail
        with_nan = finite.copy()
        with_nan[at] = np.nan
        assert np.isnan(casts.absmax(with_nan))
    assert casts.absmax(np.zeros(0, np.float32)) is None
    assert casts.absmax(finite.astype(np.float64)) is None


def test_fp16_scale_is_the_same_with_and_without_the_c_loops(monkeypatch):
    comp = Compression.get("fp16")
    arrays = [np.float32([3.0, -70000.0]), np.float32([1e-9, 2e-9]), np.float32([np.inf, 1])]
    fast = [comp.scale_for(a) for a in arrays]
    monkeypatch.setattr(casts, "AVAILABLE", False)
    assert fast == [comp.scale_for(a) for a in arrays]
