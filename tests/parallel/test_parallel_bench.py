"""python -m hpcdist.bench parallel: one row per (schedule, M), the formula beside the measure."""

import pytest
from launch import run_mpi

pytestmark = pytest.mark.launcher


def test_bench_prints_measured_and_formula_bubbles():
    args = ["-m", "hpcdist.bench", "parallel", "--steps", "2", "--warmup", "1", "--width", "32"]
    res = run_mpi(2, [*args, "--micro", "1,3"], 120)
    assert res.returncode == 0, res.output[-3000:]
    rows = [line.split("|")[1:-1] for line in res.stdout.splitlines() if line.startswith("| ")]
    table = {(r[0].strip(), int(r[1])): (float(r[2]), float(r[3])) for r in rows[1:]}
    assert set(table) == {(s, m) for s in ("gpipe", "1f1b") for m in (1, 3)}
    for (_, m), (measured, formula) in table.items():
        assert formula == pytest.approx(1 / (m + 1), abs=5e-4)  # (K-1)/(M+K-1), K = 2
        assert 0.0 <= measured < 1.0
