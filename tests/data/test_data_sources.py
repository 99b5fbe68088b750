"""HDF5Source and manifests: counts checked against the files, nothing read from outside."""

import json

import h5py
import numpy as np
import pytest

from hpcdist.data import HDF5Source, InputPipeline, write_manifest
from hpcdist.data.sources import read_manifest
from hpcdist.errors import DataError


def shard(path, n: int, start: int = 0) -> None:
    with h5py.File(path, "w") as f:
        f["features"] = np.arange(start, start + n, dtype="f4").repeat(3).reshape(n, 3)
        f["labels"] = np.arange(start, start + n)


def manifest(d, counts) -> str:
    shards = []
    for k, n in enumerate(counts):
        shard(d / f"s{k}.h5", n[1] if isinstance(n, tuple) else n)
        shards.append({"path": f"s{k}.h5", "records": n[0] if isinstance(n, tuple) else n})
    return write_manifest(str(d), shards, feature_shape=[3], feature_dtype="float32")


def every_label(src) -> list:
    from mpi4py import MPI

    pipe = InputPipeline(src, 4, comm=MPI.COMM_SELF, remainder="pad", shuffle_buffer=0)
    try:
        return sorted(int(v) for b in pipe.epoch(0) for v in b[1][b[2]])
    finally:
        pipe.close()


def test_a_manifest_that_under_counts_a_shard_is_refused(tmp_path):
    """Was: 10 records listed for a file of 25 trained on the first 10 silently."""
    manifest(tmp_path, [20, (10, 25)])
    src = HDF5Source(str(tmp_path))
    with pytest.raises(
        DataError,
        match=r"s1.h5: holds 25 feature rows and 25 labels, but the "
        r"manifest .*manifest.json says 10 records \[rank 0\]",
    ):
        every_label(src)
    src.close()


def test_a_manifest_with_the_right_counts_reads_every_record(tmp_path):
    manifest(tmp_path, [20, 25])
    src = HDF5Source(str(tmp_path))
    assert len(every_label(src)) == 45  # each shard's labels are 0..n-1
    src.close()


def test_a_manifest_without_shards_names_its_path(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": []}))
    with pytest.raises(DataError, match=r"manifest.json: the manifest lists no shards"):
        read_manifest(str(tmp_path / "manifest.json"))
    with pytest.raises(DataError, match=str(tmp_path)):
        HDF5Source(str(tmp_path))


def test_external_storage_outside_the_data_directory_is_refused(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    secret = elsewhere / "secret.bin"
    np.arange(12, dtype="f4").tofile(secret)
    with h5py.File(data / "s0.h5", "w") as f:
        f.create_dataset("features", shape=(4, 3), dtype="f4", external=[(str(secret), 0, 48)])
        f["labels"] = np.arange(4)
    write_manifest(str(data), [{"path": "s0.h5", "records": 4}], feature_shape=[3])
    src = HDF5Source(str(data))
    with pytest.raises(
        DataError,
        match=r"s0.h5: dataset '/features' keeps its data in "
        rf"{secret}, outside the data directory",
    ):
        src.read(0, 0, 4)
    src.close()


def test_virtual_dataset_pointing_outside_is_refused_inside_is_read(tmp_path):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    for where in (elsewhere, data):
        shard(where / "real.h5", 6, start=100)
        layout = h5py.VirtualLayout(shape=(6, 3), dtype="f4")
        layout[:] = h5py.VirtualSource(str(where / "real.h5"), "features", shape=(6, 3))
        vds = data / f"v-{where.name}.h5"  # one name each: HDF5 keeps a failed file open
        with h5py.File(vds, "w") as f:
            f.create_virtual_dataset("features", layout)
            f["labels"] = np.arange(6)
        if where == elsewhere:  # a list of shards is opened at once, for its counts
            with pytest.raises(DataError, match=rf"v-elsewhere.h5: .* {where}/real.h5, outside"):
                HDF5Source([str(vds)])
        else:
            src = HDF5Source([str(vds)])
            np.testing.assert_array_equal(src.read(0, 0, 6)[0][:, 0], np.arange(100, 106))
            src.close()
