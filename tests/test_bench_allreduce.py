"""The allreduce benchmark: its table's figures agree with each other and with the workload
(payload bytes, bandwidths, ratios, wire bytes), the variants it times really reduce, and the
repeated bucket sweep gives one row per size with median and spread."""

import re
from types import SimpleNamespace

import numpy as np
import pytest
from figures import assert_product, assert_quotient, value
from mpi4py import MPI

import hpcdist
from hpcdist.bench.allreduce import hpcdist_variants, main, report, sweep_table

ROW = re.compile(
    r"^\| (\d+) \| ([\d.]+) \| ([\d.]+)-([\d.]+) \| ([\d.]+)-([\d.]+) \| ([\d.]+) \|$", re.M
)


def test_sweep_table_figures():
    # 5 rounds x 3 sizes, in seconds; medians 3, 2, 10 ms, by hand
    samples = np.array([[1, 2, 9], [3, 2, 10], [5, 1, 11], [4, 3, 10], [2, 2, 30]]) * 1e-3
    rows = ROW.findall(sweep_table("w", 2, [10, 20, 30], samples, iters=4))
    assert [r[0] for r in rows] == ["10", "20", "30"]
    med = [float(r[1]) for r in rows]
    assert med == [3.0, 2.0, 10.0]
    assert [(float(r[2]), float(r[3])) for r in rows] == [(1, 5), (1, 3), (9, 30)]
    assert [(float(r[4]), float(r[5])) for r in rows] == [(2, 4), (2, 2), (10, 11)]
    assert [float(r[6]) for r in rows] == [1.5, 1.0, 5.0]
    assert "best median: 20 bytes" in sweep_table("w", 2, [10, 20, 30], samples, 4)


def test_repeat_must_be_positive():
    with pytest.raises(SystemExit):
        main(["--sweep-buckets", "1e6", "--repeat", "0"])


@pytest.mark.mpi
def test_repeated_sweep_prints_a_row_per_size(comm, capsys):
    sizes = ["65536", "262144", "1048576"]
    args = ["--sweep-buckets", ",".join(sizes), "--workloads", "small2000"]
    assert main([*args, "--repeat", "5", "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    if comm.rank != 0:
        assert out == ""
        return
    assert f"world size {comm.size}, 5 alternating rounds" in out
    rows = ROW.findall(out)
    assert [r[0] for r in rows] == sizes
    for _, med, lo, hi, q1, q3, ratio in rows:
        lo, med, hi, q1, q3 = map(float, (lo, med, hi, q1, q3))
        assert 0 < lo <= q1 <= med <= q3 <= hi
        assert float(ratio) >= 1.0
    assert min(float(r[6]) for r in rows) == 1.0
    best = min(rows, key=lambda r: float(r[1]))
    assert f"best median: {best[0]} bytes" in out
    for row in rows:  # x best median = this median / the best one, as printed
        assert_quotient(row[6], row[1], best[1])


#: The table's columns after workload and variant.
COLUMNS = ("ms", "alg", "bus", "x_raw", "x_per", "x_none", "wire")
#: small2000: 2000 tensors of 256 float32
SMALL2000_BYTES = 2000 * 256 * 4
VARIANTS = [
    "mpi4py Allreduce per tensor",
    "mpi4py Allreduce one flat buffer",
    "hpcdist AllreduceExchange none (grads in window)",
    "hpcdist AllreduceExchange bf16 (grads in window)",
    "hpcdist AllreduceExchange fp16 (grads in window)",
    "hpcdist grouped_allreduce none (copy in/out)",
]


def table_rows(out: str) -> dict:
    """variant -> its printed figures (text), from the report's table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 9 and cells[0] != "workload" and not cells[0].startswith("-"):
            rows[cells[1]] = dict(zip(COLUMNS, cells[2:], strict=True), workload=cells[0])
    return rows


def test_report_figures_by_hand(capsys):
    """Bandwidths and ratios of made-up times, worked out by hand, at 4 ranks."""
    times = dict(zip(VARIANTS, [2e-3, 1e-3, 1.5e-3, 1.25e-3, 4e-3, 5e-3], strict=True))
    wires = {VARIANTS[2]: 6e6, VARIANTS[3]: 3e6, VARIANTS[4]: 3e6}
    rows = [
        dict(workload="w", variant=v, seconds=t, nbytes=4e6, wire=wires.get(v))
        for v, t in times.items()
    ]
    report(SimpleNamespace(size=4), rows)
    got = {v: tuple(r[c] for c in COLUMNS) for v, r in table_rows(capsys.readouterr().out).items()}
    assert got == {  # algbw = 4 MB / time, busbw = algbw * 2 * 3 / 4
        VARIANTS[0]: ("2.00", "2.00", "3.00", "2.00", "1.00", "", ""),
        VARIANTS[1]: ("1.00", "4.00", "6.00", "1.00", "0.50", "", ""),
        VARIANTS[2]: ("1.50", "2.67", "4.00", "1.50", "0.75", "1.00", "6.0"),
        VARIANTS[3]: ("1.25", "3.20", "4.80", "1.25", "0.62", "0.83", "3.0"),
        VARIANTS[4]: ("4.00", "1.00", "1.50", "4.00", "2.00", "2.67", "3.0"),
        VARIANTS[5]: ("5.00", "0.80", "1.20", "5.00", "2.50", "3.33", ""),
    }


@pytest.mark.mpi
def test_table_figures_agree_with_the_workload_and_each_other(comm, capsys):
    """One row per variant; algbw = small2000's 2,048,000 bytes / the printed time, busbw =
    algbw * 2(n-1)/n, each x column = time / its baseline's time, and on one node the
    exchanges' wire bytes per rank are 2(n-1)/n of the payload (full width there)."""
    assert main(["--workloads", "small2000", "--budget", "0.02", "--no-gloo"]) == 0
    out = capsys.readouterr().out
    if comm.rank != 0:
        assert out == ""
        return
    n = comm.size
    rows = table_rows(out)
    assert list(rows) == VARIANTS and {r["workload"] for r in rows.values()} == {"small2000"}
    raw = min((r for v, r in rows.items() if v.startswith("mpi4py")), key=lambda r: value(r["ms"]))
    for variant, r in rows.items():
        assert value(r["ms"]) >= 0  # 0.00 ms: one flat Allreduce at world size 1
        assert_quotient(r["alg"], SMALL2000_BYTES / 1e9, r["ms"], scale=1e3)
        assert_product(r["bus"], r["alg"], 2 * (n - 1) / n)
        assert_quotient(r["x_raw"], r["ms"], raw["ms"])
        assert_quotient(r["x_per"], r["ms"], rows[VARIANTS[0]]["ms"])
        if variant.startswith("hpcdist"):
            assert_quotient(r["x_none"], r["ms"], rows[VARIANTS[2]]["ms"])
        else:
            assert r["x_none"] == ""
        if "AllreduceExchange" in variant and hpcdist.rank_info().num_nodes == 1:
            assert value(r["wire"]) == round(2 * (n - 1) / n * SMALL2000_BYTES / 1e6, 1)
        elif "AllreduceExchange" not in variant:
            assert r["wire"] == ""


#: relative error bound of each compression against the float64 average
BOUNDS = {"none": 1e-6, "fp16": 2e-3, "bf16": 1.6e-2}


@pytest.mark.mpi
def test_the_timed_exchanges_compute_the_average(comm):
    """What the table times is a real reduction: one call of each hpcdist variant leaves
    the float64 average of the ranks' inputs in its gradients (or returns it)."""
    hpcdist.init()
    variants, closers = hpcdist_variants(comm, [256] * 40 + [3000], bucket_bytes=8 << 10)
    try:
        for name, (run, ex) in variants.items():
            if ex is None:  # grouped_allreduce over the list the lambda closes over
                cells = dict(zip(run.__code__.co_freevars, run.__closure__, strict=True))
                before = [a.astype(np.float64) for a in cells["inputs"].cell_contents]
                after = run()
            else:
                before = [g.astype(np.float64) for g in ex.grads]
                run()
                after = ex.grads
            bound = BOUNDS[name.split()[2]]
            assert _rel_error_to_average(comm, before, after) <= bound, name
    finally:
        for ex in closers:
            ex.close()


def _rel_error_to_average(comm, before: list, after: list) -> float:
    """||after - mean over ranks of before|| / ||mean||, the mean in float64."""
    mine = np.concatenate([b.ravel() for b in before])
    mean = np.empty_like(mine)
    comm.Allreduce(mine, mean, op=MPI.SUM)
    mean /= comm.size
    got = np.concatenate([np.asarray(a, np.float64).ravel() for a in after])
    return float(np.linalg.norm(got - mean) / np.linalg.norm(mean))
