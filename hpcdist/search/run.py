"""A whole search on this job's ranks: check the journal, run the groups, write the results.

    from hpcdist import search
    sp = search.parse({"space": {"lr": [0.02, 0.1]}, "fixed": {"epochs": 3}}, "my space")
    top = search.run(search.Search(sp, Path("runs/s"), sp.trials(seed=0)))

Collective over COMM_WORLD; the top rows on rank 0 (None elsewhere).
"""

from __future__ import annotations

import sys

from .. import runtime
from ..guard import Guard
from . import journal as jn
from . import plots, prune, results
from .scheduler import Search, open_journal, run_group, split_world, write_results


class SearchError(ValueError):
    """A search that cannot start (bad flags, another search's journal); every rank raises it."""


def run(search: Search) -> list[dict] | None:
    """Run every trial of `search` not yet finished; results.csv, top.json, search.png."""
    runtime.init()
    world_guard = Guard(runtime.world_comm(), name="search")
    error = None
    try:
        if world_guard.rank == 0:
            open_journal(search)  # writes the plan, or refuses a journal of another search
        epochs = max(search.space.config(t["params"]).epochs for t in search.plan)
        pruner = prune.create(search.prune, epochs, search.space.prune)
    except ValueError as exc:
        error = str(exc)
    errors = [e for e in world_guard.allgather(error, what="every rank's check of the search") if e]
    if errors:
        world_guard.free()
        raise SearchError(errors[0])
    comm, group = split_world(search.ranks_per_trial)  # (a bad size raises on every rank)
    journal = jn.Journal(search.directory)
    run_group(search, journal, comm, group, pruner)
    world_guard.barrier(what="every group to run out of trials")
    top = report(search, journal) if world_guard.rank == 0 else None
    world_guard.free()
    comm.Free()
    return top


def report(search: Search, journal: jn.Journal, out=sys.stdout) -> list[dict]:
    """Rank 0 at the end: results.csv, top.json, search.png, and the top trials printed."""
    with journal.locked() as j:
        records = j.read()
        top = write_results(search, records)
    table = results.rows(search.plan, jn.states(records, search.trial_ids), search.max_retries)
    plot = plots.plot_search(search.directory, table, search.space.names, search.space.metric)
    counts = {s: sum(r["status"] == s for r in table) for s in ("ok", "pruned", "failed")}
    print(
        f"hpcdist.search: {len(table)} trials ({counts['ok']} ok, {counts['pruned']} pruned, "
        f"{counts['failed']} failed); top {len(top)} by {search.space.metric}:",
        file=out,
    )
    for r in top:
        params = ", ".join(f"{n}={r[n]}" for n in search.space.names)
        print(f"  {r['trial']}  {r[search.space.metric]:.4f}  {params}", file=out)
    print(
        f"hpcdist.search: {search.directory / 'results.csv'}, top.json, {plot or 'no plot'}",
        file=out,
        flush=True,
    )
    return top
