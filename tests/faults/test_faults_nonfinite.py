"""NaN in a shard: the job stops naming the rank whose input batch held it, not "some rank"."""

import re

import numpy as np
import pytest
from launch import run_mpi

from hpcdist.data.convert import write_shards

pytestmark = pytest.mark.launcher


@pytest.mark.parametrize("n", [2, 3])
def test_nan_in_a_shard_names_the_rank(tmp_path, n):
    rng = np.random.default_rng(0)
    for split, count in (("train", 600), ("val", 120)):
        x = rng.standard_normal((count, 8)).astype(np.float32)
        if split == "train":
            x[17, 3] = np.nan  # written without the converter's check, as a bad file would be
        write_shards(x, rng.integers(0, 4, count), str(tmp_path / split), num_shards=3)
    args = [
        "-m",
        "hpcdist.train",
        "--data",
        str(tmp_path),
        "--epochs",
        "1",
        "--no-progress",
        "--hidden",
        "8",
        "--run-dir",
        str(tmp_path / "run"),
        "--timeout",
        "20",
    ]
    res = run_mpi(n, args, timeout=120)
    assert res.returncode != 0 and res.seconds < 60, res.output[-3000:]
    assert "NonFiniteGradientError" in res.stderr, res.output[-3000:]
    named = set(
        re.findall(r"rank (\d+)'s input batch holds NaN or inf in row\(s\) \[\d+\]", res.stderr)
    )
    assert len(named) == 1 and int(named.pop()) < n, res.stderr[-3000:]
    # rows 0-199 of the 600 went to shard-00000.h5: the message names that file and row 17
    places = re.findall(r"(\S+) record (\d+)", res.stderr)
    assert places, res.stderr[-3000:]
    assert {(p.rsplit("/", 1)[-1], int(r)) for p, r in places} == {("shard-00000.h5", 17)}, (
        res.stderr[-3000:]
    )
