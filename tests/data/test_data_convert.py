"""Converter: CSV and .npz to HDF5 shards with a manifest, --verify, chunking along samples."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from launch import clean_env

from hpcdist.data import HDF5Source
from hpcdist.data.convert import main, verify
from hpcdist.errors import DataError


def test_npz_to_shards_manifest_and_verify(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.random((103, 5)).astype(np.float32), rng.integers(0, 9, 103)
    np.savez(tmp_path / "in.npz", x=x, y=y)
    out = tmp_path / "shards"
    assert (
        main([str(tmp_path / "in.npz"), "-o", str(out), "-n", "4", "--chunk-rows", "8", "--verify"])
        == 0
    )
    assert "verified 103 records" in capsys.readouterr().out
    src = HDF5Source(str(out))
    assert src.counts == [25, 26, 26, 26]
    with h5py.File(out / "shard-00001.h5") as f:
        assert f["features"].chunks == (8, 5)
    got = np.concatenate([src.read(i, 0, n)[0] for i, n in enumerate(src.counts)])
    np.testing.assert_array_equal(got, x)
    src.close()
    with h5py.File(out / "shard-00002.h5", "a") as f:
        f["labels"][0] += 1
    with pytest.raises(DataError, match="shard-00002.h5: contents differ"):
        verify(str(out / "manifest.json"), x, y)


def test_csv_cli_with_header_and_skip(tmp_path):
    (tmp_path / "a.csv").write_text("f1,f2,label\n1,2,0\n3,x,1\n5,6,1\n")
    out = tmp_path / "s"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpcdist.data.convert",
            str(tmp_path / "a.csv"),
            "-o",
            str(out),
            "-n",
            "2",
            "--skip-header",
            "1",
            "--on-bad",
            "skip",
            "--verify",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1" in proc.stderr and "verified 2 records" in proc.stdout
    src = HDF5Source(str(out))
    assert src.counts == [1, 1] and src.read(1, 0, 1)[1].tolist() == [1]
