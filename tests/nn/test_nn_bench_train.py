"""`python -m hpcdist.bench train`: the step and scaling modes run, and the figures they print
agree with each other and with what was asked (batch, repeats, world sizes)."""

import json
import math
import os
import re
import statistics

import numpy as np
import pytest
from figures import assert_quotient, value
from threadpoolctl import threadpool_info

from hpcdist.bench import train

BLAS = re.compile(r"^numpy (\S+) BLAS: (.+); threads (\S+); OPENBLAS_CORETYPE=(.*)$", re.M)
STEP = re.compile(
    r"^hpcdist\s+(\d+) samples/s median \((\d+) best, ([\d.]+) ms/step, (\d+) repeats\)$", re.M
)


def test_step_mode_runs_on_a_tiny_network(capsys):
    """samples/s median = batch / the printed ms per step, best >= median, one timing per
    repeat asked for, and the header names the network and batch asked for. The BLAS line
    names numpy's BLAS as threadpoolctl sees it here, the 1 thread asked for as that BLAS
    reports it under the bench's limit, and $OPENBLAS_CORETYPE as this process has it.

    Planted bug it catches: the bench's thread limit not applied (the BLAS then reports its
    default, one thread a core: 2 here)."""
    argv = ["step", "--sizes", "8,6,3", "--batch", "4", "--steps", "2", "--warmup", "1"]
    assert train.main(argv + ["--repeats", "3", "--no-torch", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("train step: MLP 8-6-3, batch 4, float32, momentum; ")
    assert "torch peer: skipped (--no-torch)" in out
    (version, desc, threads, core), *more = BLAS.findall(out)
    assert not more and version == np.__version__
    libs = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    assert libs, threadpool_info()
    for lib in libs:
        assert f"{lib['internal_api']} {lib['version']} ({lib.get('architecture')})" in desc
    assert threads.split(",") == ["1"] * len(libs), threads
    assert core == os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    (median, best, ms, repeats), *more = STEP.findall(out)
    assert not more and repeats == "3"
    assert value(ms) > 0 and value(best) >= value(median) > 0
    assert_quotient(median, 4e3, ms)  # 4 samples per step, ms -> s
    assert "ratio hpcdist/torch" not in out  # no peer, no ratio


@pytest.mark.launcher
def test_scaling_mode_runs_the_training_loop(capsys, tmp_path):
    """One row per world size asked for; per rank = samples/s / k; efficiency = per rank at
    k / per rank at the first size (1.00 there); exchange and data wait are shares, 0-100%.
    The runs it keeps (--keep-runs) show training happened: k ranks, 3 epochs of
    floor(train records per rank / 32) steps each, the training loss falling, and a final
    validation loss below ln 10 (what knowing nothing of 10 classes gives) with accuracy
    twice chance; the table's figures are those runs' medians over epochs 2..

    Planted bugs it catches: scaling runs that do not learn (--lr 1e-9 passed to hpcdist.train:
    the loss stays at 4.24),
    or the table's medians taken over every epoch (the first, start-up epoch included)."""
    runs = tmp_path / "runs"
    argv = ["scaling", "--ranks", "1,2", "--records-per-rank", "512", "--features", "16"]
    argv += ["--hidden", "8", "--batch", "32", "--epochs", "3", "--keep-runs", str(runs)]
    assert train.main(argv) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln[:5].strip().isdigit()]
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(len(r) == 6 for r in rows), rows
    for k, total, per_rank, eff, exchange, wait in rows:
        assert value(total) > 0
        assert_quotient(per_rank, total, value(k))
        assert_quotient(eff, per_rank, rows[0][2])
        assert 0 <= value(exchange) <= 100 and 0 <= value(wait) <= 100
        run = runs / f"np{k}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["world_size"] == int(k) and summary["status"] == "finished"
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == [1, 2, 3]
        val = epochs[-1]["val_count"]
        assert 0 < val < int(k) * 512 // 5  # the synthetic set holds out about a tenth
        steps = (int(k) * 512 - val) // int(k) // 32  # full batches of 32 on each rank
        assert [e["step"] for e in epochs] == [steps, 2 * steps, 3 * steps]
        losses = [e["train_loss"] for e in epochs]
        assert losses[-1] < 0.8 * losses[0], losses  # measured 0.57-0.60
        assert epochs[-1]["val_loss"] < math.log(10) - 0.2, epochs[-1]  # measured 1.94-1.97
        assert epochs[-1]["val_accuracy"] >= 0.2, epochs[-1]  # measured 0.30-0.35
        timed = epochs[1:]
        assert total == f"{statistics.median(e['samples_per_s'] for e in timed):,.0f}"
        assert exchange == f"{statistics.median(e['exchange_share'] for e in timed):.0%}"
        assert wait == f"{statistics.median(e['data_wait_share'] for e in timed):.0%}"
    assert rows[0][3] == "1.00"  # efficiency of the baseline
