"""`python -m hpcdist.bench train`: the step and scaling modes run and report."""

import pytest

from hpcdist.bench import train


def test_step_mode_runs_on_a_tiny_network(capsys):
    argv = ["step", "--sizes", "8,6,3", "--batch", "4", "--steps", "2", "--warmup", "1"]
    assert train.main(argv + ["--repeats", "1", "--no-torch", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "torch peer: skipped (--no-torch)" in out
    assert "OPENBLAS_CORETYPE=" in out and "threads 1" in out
    assert "hpcdist" in out and "samples/s median" in out


@pytest.mark.launcher
def test_scaling_mode_runs_the_training_loop(capsys):
    argv = ["scaling", "--ranks", "1,2", "--records-per-rank", "512", "--features", "16"]
    assert train.main(argv + ["--hidden", "8", "--batch", "32", "--epochs", "2"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln[:5].strip().isdigit()]
    assert [r[0] for r in rows] == ["1", "2"]
    assert float(rows[0][3]) == 1.0  # efficiency of the baseline
    assert all(float(r[1].replace(",", "")) > 0 for r in rows)
