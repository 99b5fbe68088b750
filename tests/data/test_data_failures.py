"""A corrupt shard stops the whole job quickly, naming the file and the rank that read it."""

import numpy as np
import pytest
from launch import run_mpi

from hpcdist.data.convert import write_shards


@pytest.mark.launcher
@pytest.mark.parametrize("damage, n", [("truncate", 2), ("garbage", 2), ("garbage", 3)])
def test_corrupt_shard_aborts_job_naming_file(tmp_path, damage, n):
    """Planted bug it catches: a bad shard that ends the job only when a given rank reads it
    (which rank reads shard 2 changes with the world size: 2 and 3 here)."""
    x = np.ones((400, 4), np.float32)
    write_shards(x, np.zeros(400, np.int64), str(tmp_path), num_shards=4, chunk_rows=16)
    bad = tmp_path / "shard-00002.h5"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"not hdf5" * 100)
    res = run_mpi(n, ["tests/data/bad_shard_job.py", str(tmp_path)], timeout=60)
    assert res.returncode != 0
    assert res.seconds < 30
    assert "shard-00002.h5" in res.output
    assert "rank" in res.output and "aborting the job" in res.output
    assert "finished without noticing" not in res.output
