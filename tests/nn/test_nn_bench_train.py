"""`python -m hpcdist.bench train`: the step and scaling modes run, and the figures they print
agree with each other and with what was asked (batch, repeats, world sizes)."""

import re

import pytest
from figures import assert_quotient, value

from hpcdist.bench import train

STEP = re.compile(
    r"^hpcdist\s+(\d+) samples/s median \((\d+) best, ([\d.]+) ms/step, (\d+) repeats\)$", re.M
)


def test_step_mode_runs_on_a_tiny_network(capsys):
    """samples/s median = batch / the printed ms per step, best >= median, one timing per
    repeat asked for, and the header names the network and batch asked for."""
    argv = ["step", "--sizes", "8,6,3", "--batch", "4", "--steps", "2", "--warmup", "1"]
    assert train.main(argv + ["--repeats", "3", "--no-torch", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("train step: MLP 8-6-3, batch 4, float32, momentum; ")
    assert "torch peer: skipped (--no-torch)" in out
    assert "OPENBLAS_CORETYPE=" in out and "threads 1" in out
    (median, best, ms, repeats), *more = STEP.findall(out)
    assert not more and repeats == "3"
    assert value(ms) > 0 and value(best) >= value(median) > 0
    assert_quotient(median, 4e3, ms)  # 4 samples per step, ms -> s
    assert "ratio hpcdist/torch" not in out  # no peer, no ratio


@pytest.mark.launcher
def test_scaling_mode_runs_the_training_loop(capsys):
    """One row per world size asked for; per rank = samples/s / k; efficiency = per rank at
    k / per rank at the first size (1.00 there); exchange and data wait are shares, 0-100%."""
    argv = ["scaling", "--ranks", "1,2", "--records-per-rank", "512", "--features", "16"]
    assert train.main(argv + ["--hidden", "8", "--batch", "32", "--epochs", "2"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln[:5].strip().isdigit()]
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(len(r) == 6 for r in rows), rows
    for k, total, per_rank, eff, exchange, wait in rows:
        assert value(total) > 0
        assert_quotient(per_rank, total, value(k))
        assert_quotient(eff, per_rank, rows[0][2])
        assert 0 <= value(exchange) <= 100 and 0 <= value(wait) <= 100
    assert rows[0][3] == "1.00"  # efficiency of the baseline
