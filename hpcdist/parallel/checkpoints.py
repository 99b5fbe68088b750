"""Checkpoints of a split model in the usual layout: whole `params/` and `optimizer/`, one
set of per-rank groups per replica, so a split run and an unsplit one resume each other.

The file is written as a data-parallel job of `replicas` ranks would write
it: every rank's slice becomes Shards of the whole arrays, and each replica
stores its per-rank groups (input-pipeline position, dropout states, epoch
progress) once, under slot `replica`, with the dropout states of all its
members joined. On restore each member is given its replica's groups and
cuts the whole arrays to its slice. A split job of R replicas and a plain
job of R ranks (same global batch, same data plan) therefore read each
other's checkpoints.
"""

from __future__ import annotations

from ..checkpoint import PER_RANK_GROUPS


def slots(layout) -> dict:
    """CheckpointManager's slot/slots for this rank (nothing to add without a layout)."""
    if layout is None:
        return {}
    return {"slot": layout.replica if layout.member == 0 else None, "slots": layout.replicas}


def save_parts(exchange, layout, arrays: dict) -> tuple[dict, list]:
    """(groups to save, Shards): the slices as shards, the replica's dropout states joined."""
    kept, shards = exchange.shards(arrays)
    states = layout.mp_guard.gather(kept.pop("rng", {}), what="the replica's dropout states")
    if layout.member == 0:
        joined = {k: v for state in states for k, v in state.items()}
        if joined:
            kept["rng"] = joined
    return kept, shards


def restore_groups(exchange, layout, groups: dict) -> dict:
    """A checkpoint's groups for this rank: its replica's per-rank groups, its slices."""
    mine = {g: d for g, d in groups.items() if g in PER_RANK_GROUPS}
    mine = layout.mp_guard.bcast(
        mine if layout.member == 0 else None, root=0, what="the replica's per-rank state"
    )
    return exchange.localize({**groups, **mine})
