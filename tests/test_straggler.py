"""$HPCDIST_STRAGGLER: one named rank sleeps before each training step; unset, nothing does."""

import pytest

from hpcdist import straggler
from hpcdist.config import TrainConfig, validate
from hpcdist.trainer import Trainer


def test_parse_reads_rank_and_seconds_and_rejects_the_rest():
    assert straggler.parse("1:0.005") == (1, 0.005)
    for bad in ("1", "x:0.1", "1:y", "-1:0.1", "1:-2", "1:nan"):
        with pytest.raises(ValueError, match="HPCDIST_STRAGGLER"):
            straggler.parse(bad)


def test_only_the_named_rank_straggles():
    env = {straggler.ENV: "2:0.25"}
    assert straggler.from_env(0, 3, env) is None
    assert straggler.from_env(2, 3, env).seconds == 0.25
    assert straggler.from_env(2, 3, {}) is None
    assert straggler.from_env(2, 3, {straggler.ENV: "2:0"}) is None
    with pytest.raises(ValueError, match="names rank 3, but the trainer has 3 ranks"):
        straggler.from_env(0, 3, {straggler.ENV: "3:0.1"})


@pytest.mark.mpi
def test_the_trainer_delays_every_step_of_the_slow_rank_only(comm, mpi_tmp_path, monkeypatch):
    slow = comm.size - 1
    monkeypatch.setenv(straggler.ENV, f"{slow}:0.001")
    calls = []
    monkeypatch.setattr(straggler.Straggler, "delay", lambda self: calls.append(self.seconds))
    cfg = TrainConfig(
        epochs=1,
        synthetic=96,
        synthetic_features=8,
        hidden=[8],
        batch_size=8,
        checkpoint_every=0,
        run_dir=str(mpi_tmp_path / "run"),
        progress=False,
    )
    with Trainer(validate(cfg)) as tr:
        summary = tr.fit()
    assert summary["steps"] > 0
    expected = summary["steps"] if comm.rank == slow else 0
    assert calls == [0.001] * expected
