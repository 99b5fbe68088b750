"""search.run() under mpiexec at any world size: every trial handed out once, each one what a
Trainer on the same ranks gives by itself."""

import json
import os

import pytest

import hpcdist
from hpcdist import search

SPACE = {"space": {"lr": [0.05, 0.1], "hidden": ["16", "32"]}, "fixed": {"epochs": 2}}


@pytest.mark.mpi
@pytest.mark.parametrize("per_trial", ["one", "all"])
def test_every_trial_runs_once_and_equals_a_plain_trainer(comm, mpi_tmp_path, per_trial):
    os.environ["HPCDIST_CACHE"] = str(mpi_tmp_path / "cache")
    k = 1 if per_trial == "one" else comm.size
    sp = search.parse(SPACE, "test space")
    run_dir = mpi_tmp_path / f"s-{per_trial}"
    top = search.run(search.Search(sp, run_dir, sp.trials(0), ranks_per_trial=k, top_k=2))
    assert (top is not None) == (comm.rank == 0)
    comm.Barrier()
    records = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    ids = [t["trial"] for t in sp.trials(0)]
    assert sorted(r["trial"] for r in records if r["event"] == "start") == ids
    assert sorted(r["trial"] for r in records if r["event"] == "end") == ids
    owners = {r["owner"] for r in records if r["event"] == "start"}
    assert len(owners) <= comm.size // k
    rows = {r["trial"]: r for r in search.read_csv(run_dir / "results.csv")}
    # the reference: each trial's settings trained by a Trainer of its own, on k ranks
    group = comm.Split(comm.rank // k, comm.rank) if k < comm.size else comm
    for t in sp.trials(0):
        if (ids.index(t["trial"]) % (comm.size // k)) != comm.rank // k:
            continue  # spread the reference runs over the groups too
        cfg = sp.config(t["params"], run_dir=str(mpi_tmp_path / f"ref-{per_trial}-{t['trial']}"))
        cfg.progress = False
        with hpcdist.Trainer(cfg, comm=group) as tr:
            summary = tr.fit()
        assert rows[t["trial"]]["val_accuracy"] == summary["final"]["val_accuracy"], t
        assert rows[t["trial"]]["status"] == "ok"
    if group is not comm:
        group.Free()
    if comm.rank == 0:
        accs = {t: r["val_accuracy"] for t, r in rows.items()}
        assert [e["trial"] for e in top] == sorted(accs, key=lambda t: (-accs[t], t))[:2]
