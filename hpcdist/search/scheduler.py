"""Dynamic hand-out of trials to rank groups through the shared journal.

COMM_WORLD is split into groups of `ranks_per_trial` ranks. Rank 0 of each
group takes the next trial from the journal under its lock (the first one
not finished and not held by a live process), tells its group, and the group
trains it; when no trial is free but some are still running elsewhere the
group waits and asks again, so a trial whose runner died (its run lock freed
by the kernel) is picked up by whoever is free. No coordinator rank sits idle,
and a SLURM array's tasks share the journal the same way as the groups of one
job do. Every collective goes through a Guard; waits are short polls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .. import devices, runtime
from ..guard import Guard
from . import journal as jn
from . import results
from .space import SearchSpace
from .trial import Outcome, run_trial


@dataclass
class Search:
    """One search: its space and plan, where it lives and how its trials run."""

    space: SearchSpace
    directory: Path
    plan: list[dict]
    ranks_per_trial: int = 1
    prune: str = "none"
    max_retries: int = 0
    top_k: int = 3
    seed: int = 0
    poll_s: float = 0.5

    @property
    def trial_ids(self) -> list[str]:
        return [t["trial"] for t in self.plan]

    def settings(self) -> dict:
        """What a restarted search (or another array task) must share with the journal's plan."""
        return {
            "seed": self.seed,
            "ranks_per_trial": self.ranks_per_trial,
            "prune": self.prune,
            "metric": self.space.metric,
        }

    def trial_config(self, trial: dict, resume: bool, device: str):
        params = dict(trial["params"])
        extra = {} if "seed" in self.space.fixed or "seed" in params else {"seed": self.seed}
        if "progress" not in self.space.fixed:
            extra["progress"] = False
        if "device" not in self.space.fixed and "device" not in params:
            extra["device"] = device
        run_dir = str(self.directory / "trials" / trial["trial"])
        # a trial started afresh (a retry) replaces what its failed run left
        return self.space.config(
            {**extra, **params}, run_dir=run_dir, resume=resume, overwrite=not resume
        )


def open_journal(search: Search) -> jn.Journal:
    """The search's journal, with its plan written (first start) or checked (restart)."""
    journal = jn.Journal(search.directory)
    with journal.locked() as j:
        records = j.read()
        plans = [r for r in records if r.get("event") == "plan"]
        if not plans:
            j.append({"event": "plan", "trials": search.plan, "settings": search.settings()})
        else:
            _check_plan(plans[0], search, journal.path)
    return journal


def _check_plan(rec: dict, search: Search, path: Path) -> None:
    theirs, ours = rec.get("settings", {}), search.settings()
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    if rec.get("trials") != search.plan:
        diff["trials"] = ("the journal's", "this command's")
    if diff:
        text = ", ".join(f"{k}: journal {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"{path} holds another search ({text}); use the same command to continue it, "
            "or another --run-dir"
        )


def next_action(search: Search, journal: jn.Journal) -> tuple:
    """Rank 0 of a group: ("run", trial, resume, lock_fd) | ("wait",) | ("done",)."""
    with journal.locked() as j:
        st = jn.states(j.read(), search.trial_ids)
        left = [t for t in search.plan if not st[t["trial"]].finished(search.max_retries)]
        if not left:
            return ("done",)
        for t in left:
            fd = j.try_claim(t["trial"])
            if fd is None:
                continue
            # A killed run continues from its checkpoints; a failed or new one starts afresh.
            resume = st[t["trial"]].end is None and st[t["trial"]].starts > 0
            j.append({"event": "start", "trial": t["trial"], "owner": jn.owner(), "resume": resume})
            return ("run", t, resume, fd)
    return ("wait",)


def group_device(group_index: int) -> str:
    """A GPU per group where there are GPUs (round robin), else the CPU."""
    n = devices.visible_gpus()
    return f"gpu:{group_index % n}" if n else "cpu"


def run_group(search: Search, journal: jn.Journal, comm, group_index: int, pruner) -> int:
    """Take and run trials until none is left (collective over `comm`); how many this group ran."""
    guard = Guard(comm, name=f"search group {group_index}")
    device = guard.bcast(group_device(group_index) if guard.rank == 0 else None, what="the device")
    sign = 1.0 if search.space.mode == "max" else -1.0
    ran = 0
    try:
        while True:
            action, fd = (next_action(search, journal), None) if guard.rank == 0 else (None, None)
            if action is not None and action[0] == "run":
                fd, action = action[3], action[:3]
            action = guard.bcast(action, what="the next trial")
            if action[0] == "done":
                return ran
            if action[0] == "wait":
                time.sleep(search.poll_s)
                continue
            _, trial, resume = action
            cfg = search.trial_config(trial, resume, device)
            outcome = run_trial(
                cfg,
                comm,
                trial=trial["trial"],
                journal=journal if guard.rank == 0 else None,
                pruner=pruner,
                metric=search.space.metric,
                sign=sign,
            )
            if guard.rank == 0:
                finish(search, journal, trial["trial"], outcome, fd)
            ran += 1
    finally:
        guard.free()


def finish(search: Search, journal: jn.Journal, trial: str, outcome: Outcome, fd) -> None:
    """Record the trial's end, release its run lock, refresh results.csv and top.json."""
    with journal.locked() as j:
        j.append(outcome.record(trial))
        jn.release(fd)
        write_results(search, j.read())
    if outcome.status == "failed":
        print(f"hpcdist.search: trial {trial} failed: {outcome.error}", flush=True)
    else:
        print(
            f"hpcdist.search: trial {trial} {outcome.status} after {outcome.epochs} epoch(s): "
            f"val accuracy {outcome.val_accuracy:.4f} ({outcome.seconds:.1f} s)",
            flush=True,
        )


def write_results(search: Search, records: list[dict]) -> list[dict]:
    """results.csv and top.json from the journal's records; the top rows."""
    st = jn.states(records, search.trial_ids)
    table = results.rows(search.plan, st, search.max_retries)
    top = results.best(table, search.space.metric, search.space.mode, search.top_k)
    results.write(search.directory, table, search.space.names, top)
    return top


def split_world(ranks_per_trial: int):
    """(the group communicator, its index) of this rank; ValueError if the size does not divide."""
    world = runtime.world_comm()
    if ranks_per_trial < 1 or world.size % ranks_per_trial:
        raise ValueError(
            f"--ranks-per-trial {ranks_per_trial} does not divide the {world.size} ranks of "
            "this job into whole groups"
        )
    color = world.rank // ranks_per_trial
    return world.Split(color, world.rank), color
