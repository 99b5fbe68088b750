"""jobscripts/search_array.sbatch run as two concurrent array tasks (two separate MPI jobs, as
SLURM would start them) on one journal: every trial once, results merged. On the CI cluster
tests/slurm/run_smoke_jobs.sh submits the same script with sbatch."""

import json
import subprocess

import pytest
from launch import ROOT, clean_env

pytestmark = pytest.mark.launcher


def test_two_array_tasks_share_one_journal(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text('[space]\nlr = [0.05, 0.1, 0.2]\nhidden = ["32", "64"]\n[fixed]\nepochs = 4\n')
    run = tmp_path / "run"
    procs = []
    for task in (0, 1):
        env = clean_env(
            {
                "HPCDIST_CACHE": str(tmp_path / "cache"),
                "SLURM_ARRAY_JOB_ID": "42",
                "SLURM_ARRAY_TASK_ID": str(task),
                "SLURM_NTASKS": "1",
                "RUN_DIR": str(run),
                "SPACE": str(space),
            }
        )
        procs.append(
            subprocess.Popen(
                ["bash", "jobscripts/search_array.sbatch"],
                cwd=ROOT,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "6/6 trials recorded by" in out
    records = [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]
    starts = [r["trial"] for r in records if r["event"] == "start"]
    ends = [r["trial"] for r in records if r["event"] == "end"]
    assert sorted(starts) == sorted(ends) == [f"t{i:03d}" for i in range(6)]  # each once
    assert len({r["owner"] for r in records if r["event"] == "start"}) == 2  # both took some
