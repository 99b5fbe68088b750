"""preadv_rows: consecutive file rows scattered straight into row addresses."""

import os

import numpy as np
import pytest

from hpcdist.data import rawh5

pytestmark = pytest.mark.skipif(not rawh5.LIBC_PREADV, reason="libc has no preadv")


def test_rows_land_at_their_addresses(tmp_path):
    rows = np.arange(3000 * 5, dtype=np.float32).reshape(3000, 5)  # > IOV_MAX rows
    path = tmp_path / "rows.bin"
    path.write_bytes(b"header!!" + rows.tobytes())
    dest = np.zeros_like(rows)
    perm = np.random.default_rng(0).permutation(len(rows))  # row i goes to dest[perm[i]]
    addrs = np.uint64(dest.ctypes.data) + perm.astype(np.uint64) * np.uint64(dest[0].nbytes)
    fd = os.open(path, os.O_RDONLY)
    try:
        rawh5.preadv_rows(fd, addrs, dest[0].nbytes, 8)
        np.testing.assert_array_equal(dest[perm], rows)
        with pytest.raises(OSError, match="short"):
            rawh5.preadv_rows(fd, addrs[:10], dest[0].nbytes, 8 + rows.nbytes - 20)
    finally:
        os.close(fd)
