"""The allreduce benchmark's repeated bucket sweep: one row per size with median and spread."""

import re

import numpy as np
import pytest

from hpcdist.bench.allreduce import main, sweep_table

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
    best = min(rows, key=lambda r: float(r[1]))[0]
    assert f"best median: {best} bytes" in out
