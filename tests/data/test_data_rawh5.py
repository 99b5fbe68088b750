"""HDF5Source.read_into: the os.preadv path against h5py, and the fall-backs."""

import h5py
import numpy as np
import pytest

from hpcdist.data import HDF5Source


@pytest.mark.parametrize(
    "kw", [{"chunks": (7, 3, 2)}, {}, {"chunks": (16, 3, 2), "compression": "gzip"}]
)
def test_raw_reads_match_h5py(tmp_path, kw):
    x = np.random.default_rng(0).random((100, 3, 2)).astype(np.float32)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("features", data=x, **kw)
        f["labels"] = np.arange(100) * 3
    src = HDF5Source([str(tmp_path / "a.h5")])
    for a, b in [(0, 100), (5, 6), (6, 22), (99, 100), (10, 10)]:
        ox, oy = np.empty((b - a, 3, 2), np.float32), np.empty(b - a, np.int64)
        src.read_into(0, a, b, ox, oy)
        np.testing.assert_array_equal(ox, x[a:b])  # reference: the array written
        np.testing.assert_array_equal(oy, np.arange(a, b) * 3)
    raw = src.raw_layout(0)
    assert (raw is None) == ("compression" in kw)  # filtered data goes through h5py
    src.close()
