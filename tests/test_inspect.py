"""python -m hpcdist.inspect: a checkpoint's contents listed and verified, with h5py only."""

import h5py
import numpy as np
from mpi4py import MPI

from hpcdist import inspect
from hpcdist.checkpoint import CheckpointManager


def _save(tmp_path, step=5):
    mgr = CheckpointManager(tmp_path / "run" / "checkpoints", keep=3, comm=MPI.COMM_SELF)
    arrays = {
        "params": {"0.weight": np.ones((4, 3), np.float32), "0.bias": np.zeros(3, np.float32)},
        "rng": {"pcg64": np.arange(6, dtype=np.uint64)},
    }
    meta = {"config": {"hidden": [4], "seed": 9, "lr": 0.1, "run_dir": "x"}, "note": 1}
    return mgr.save(step, 2, arrays, meta)


def test_lists_a_run_dirs_newest_checkpoint_and_verifies_it(tmp_path, capsys):
    _save(tmp_path, 5)
    newest = _save(tmp_path, 9)
    assert inspect.main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(newest)
    assert "step 9, epoch 2, written by 1 rank slot(s), format 2" in out
    assert "config  hidden=[4], lr=0.1, seed=9\n" in out and "run_dir=" not in out
    assert "meta    note" in out
    lines = [ln.split() for ln in out.splitlines()]
    assert ["0.weight", "(4,", "3)", "float32", "48", "B"] in lines
    assert ["pcg64", "(6,)", "uint64", "48", "B"] in lines
    assert "  ranks/0/rng/" in out.splitlines()
    assert out.rstrip().endswith("verified: every checksum holds")
    assert inspect.main([str(newest), "--config"]) == 0
    assert "run_dir=x" in capsys.readouterr().out


def test_a_flipped_byte_is_reported_bad(tmp_path, capsys):
    path = _save(tmp_path)
    with h5py.File(path, "r") as f:
        offset = f["params/0.weight"].id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset + 2)
        byte = fh.read(1)
        fh.seek(offset + 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert inspect.main([str(path)]) == 1
    assert "BAD: checkpoint" in capsys.readouterr().out


def test_no_checkpoint_is_exit_2_naming_the_path(tmp_path, capsys):
    assert inspect.main([str(tmp_path)]) == 2
    assert f"no checkpoint (ckpt-*.h5) at {tmp_path}" in capsys.readouterr().err
