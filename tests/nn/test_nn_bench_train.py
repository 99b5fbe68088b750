"""`python -m hpcdist.bench train`: the step mode runs and reports; scaling says what it needs."""

import importlib.util

import pytest

from hpcdist.bench import train


def test_step_mode_runs_on_a_tiny_network(capsys):
    argv = ["step", "--sizes", "8,6,3", "--batch", "4", "--steps", "2", "--warmup", "1"]
    assert train.main(argv + ["--repeats", "1", "--no-torch", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "torch peer: skipped (--no-torch)" in out
    assert "OPENBLAS_CORETYPE=" in out and "threads 1" in out
    assert "hpcdist" in out and "samples/s median" in out


def test_scaling_mode_reports_that_it_needs_the_training_loop(capsys):
    if importlib.util.find_spec("hpcdist.train") is not None:
        pytest.skip("hpcdist.train exists; the training-loop work tests its scaling mode")
    assert train.main(["scaling"]) == 2
    assert "needs hpcdist.train" in capsys.readouterr().out
