"""Stress: many epochs, odd sizes, random consumer sleeps, every read path; a hang fails."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mpi4py import MPI

from hpcdist.data import ArraySource, InputPipeline
from hpcdist.data.procread import _child_env
from hpcdist.errors import DataError

# Runs in a child process so that a deadlock becomes a timeout, not a hung suite.
CHILD = textwrap.dedent(
    """
    import random, sys, time
    import h5py, numpy as np
    from mpi4py import MPI
    from hpcdist.data import HDF5Source, InputPipeline, write_manifest
    d, readers = sys.argv[1], sys.argv[2]
    counts = (359, 360, 1, 361, 357)  # digits-like: 1438 records in odd shards
    shards, start = [], 0
    for k, n in enumerate(counts):
        with h5py.File(f"{d}/s{k}.h5", "w") as f:
            ids = np.arange(start, start + n)
            f.create_dataset("features", data=np.repeat(ids[:, None], 4, 1).astype("f4"),
                             chunks=(max(1, min(n, 7)), 4))
            f["labels"] = ids
        shards.append({"path": f"s{k}.h5", "records": n})
        start += n
    write_manifest(d, shards, feature_shape=[4], feature_dtype="float32", label_dtype="int64")
    total, rng = start, random.Random(0)
    configs = [  # (batch, shuffle_buffer, block_size, num_threads, remainder)
        (16, 1024, 1024, 2, "drop"), (64, 1, 1024, 2, "pad"), (7, 3, 5, 3, "drop"),
        (1, 0, 1, 2, "pad"), (13, 11, 17, 1, "drop"), (5, 29, 3, 4, "pad"),
    ]
    pipes = [InputPipeline(HDF5Source(d), b, seed=s, comm=MPI.COMM_SELF, shuffle_buffer=sb,
                           block_size=bs, num_threads=t, remainder=r, readers=readers,
                           stall_timeout=60)
             for s, (b, sb, bs, t, r) in enumerate(configs)]
    first = {}
    for epoch in range(int(sys.argv[3])):
        for k, pipe in enumerate(pipes):
            seen = []
            for batch in pipe.epoch(epoch % 3):
                y = batch[1][batch[2]] if len(batch) == 3 else batch[1]
                assert (batch[0][:len(y), 0] == y).all()
                seen.append(y.copy())
                if rng.random() < 0.2:
                    time.sleep(rng.random() * 0.002)
            ids = np.concatenate(seen)
            assert len(np.unique(ids)) == len(ids)
            if pipe.remainder == "pad":
                assert sorted(ids.tolist()) == list(range(total))
            key = (k, epoch % 3)
            assert first.setdefault(key, ids.tobytes()) == ids.tobytes(), key
    for pipe in pipes:
        pipe.close()
    print("ok")
    """
)


@pytest.mark.launcher  # a child job of its own: world size 1 only
@pytest.mark.parametrize("readers", ["auto", "ring", "processes"])
def test_many_epochs_odd_sizes_random_sleeps_never_hang(tmp_path, readers):
    epochs = {"auto": 12, "ring": 4, "processes": 6}[readers]
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(tmp_path), readers, str(epochs)],
            env=_child_env(),  # not a rank of this job
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired as ex:
        pytest.fail(f"pipeline hung ({readers}): {ex.stdout}\n{ex.stderr}")
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


def test_a_stalled_reader_raises_naming_what_was_awaited():
    class Stuck(ArraySource):
        def read(self, file_index, start, stop):
            if start >= 40:
                import time

                time.sleep(3)
            return super().read(file_index, start, stop)

    src = Stuck(np.zeros((100, 2), np.float32), np.arange(100))
    pipe = InputPipeline(  # this rank alone: the stuck records must be its own
        src, 10, comm=MPI.COMM_SELF, shuffle_buffer=20, block_size=20, stall_timeout=0.5
    )
    with pytest.raises(DataError, match=r"no batch for 0.5 s: waited for 30 buffered records"):
        for _ in pipe.epoch(0):
            pass
