"""Checks of a benchmark's printed figures against each other, allowing for their rounding."""

import math


def half_unit(text) -> float:
    """Half the last printed digit of `text` ("1.25" -> 0.005, "6,090" -> 0.5); 0 for a
    number (an exact figure, not a printed one)."""
    if not isinstance(text, str):
        return 0.0
    text = text.strip().replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0**-decimals


def value(text) -> float:
    """A printed figure (or a number) as a float: finite, thousands separators dropped."""
    x = float(text.strip().replace(",", "").rstrip("%") if isinstance(text, str) else text)
    assert math.isfinite(x), text
    return x


def assert_quotient(q: str, num: str, den: str, scale: float = 1.0) -> None:
    """Printed q is scale * num / den, all three rounded as printed (num, den >= 0).

    A den printed as 0 (below its last digit) bounds q from below only."""
    n, d, hn, hd = value(num), value(den), half_unit(num), half_unit(den)
    assert n >= 0 and d >= 0, (num, den)
    lo = scale * max(n - hn, 0.0) / (d + hd) - half_unit(q)
    hi = scale * (n + hn) / (d - hd) + half_unit(q) if d > hd else math.inf
    assert lo <= value(q) <= hi, f"{q} is not {scale} x {num} / {den} (within [{lo}, {hi}])"


def assert_product(p: str, a: str, factor: float) -> None:
    """Printed p is factor * a, both rounded as printed (factor >= 0)."""
    lo = factor * (value(a) - half_unit(a)) - half_unit(p)
    hi = factor * (value(a) + half_unit(a)) + half_unit(p)
    assert lo <= value(p) <= hi, f"{p} is not {factor} x {a} (within [{lo}, {hi}])"
