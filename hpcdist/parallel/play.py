"""Playing a schedule table without running it: deadlocks, data dependencies, bubble, memory.

The play treats every send as synchronous (it completes only once the
matching receive is posted), the strictest semantics MPI allows, so a table
that plays to the end cannot deadlock under any buffering. Ops in one "comm"
group are posted together and the group finishes when all of them matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .schedules import Action, ScheduleError, Table


@dataclass
class _Posted:
    pending: set = field(default_factory=set)
    start: float = 0.0
    end: float = 0.0


def play(table: Table, forward_cost: float = 1.0, backward_cost: float = 1.0) -> list[float]:
    """Each stage's finishing time with the given action costs (transfers take no time).

    ScheduleError, naming every stuck stage and what it waits for, when the
    table deadlocks.
    """
    k = len(table)
    pc, clock = [0] * k, [0.0] * k
    posted: dict[int, _Posted] = {}
    cost = {"forward": forward_cost, "backward": backward_cost}
    while not all(pc[s] == len(table[s]) for s in range(k)):
        moved = False
        for s in range(k):
            if pc[s] == len(table[s]):
                continue
            action = table[s][pc[s]]
            if action.kind != "comm":
                clock[s] += cost[action.kind]
                pc[s], moved = pc[s] + 1, True
                continue
            _check_peers(table, s, action)
            if s not in posted:
                posted[s] = _Posted(set(action.ops), clock[s], clock[s])
            moved |= _match(posted, s)
            if not posted[s].pending:
                clock[s] = posted.pop(s).end
                pc[s], moved = pc[s] + 1, True
        if not moved:
            raise ScheduleError(_stuck(table, pc))
    return clock


def _match(posted: dict[int, _Posted], s: int) -> bool:
    """Complete the ops of stage s whose partner is posted; whether any completed."""
    mine, moved = posted[s], False
    for op in list(mine.pending):
        theirs = posted.get(op.peer)
        partner = op.partner(s)
        if theirs is None or partner not in theirs.pending:
            continue
        when = max(mine.start, theirs.start)
        mine.pending.discard(op)
        theirs.pending.discard(partner)
        mine.end, theirs.end = max(mine.end, when), max(theirs.end, when)
        moved = True
    return moved


def _check_peers(table: Table, s: int, action: Action) -> None:
    for op in action.ops:
        if not 0 <= op.peer < len(table) or op.peer == s:
            raise ScheduleError(f"stage {s}: {op} names no other stage of {len(table)}")


def _stuck(table: Table, pc: list[int]) -> str:
    waits = [
        f"stage {s} at action {pc[s]} ({table[s][pc[s]]})"
        for s in range(len(table))
        if pc[s] < len(table[s])
    ]
    return "schedule deadlocks: " + "; ".join(waits)


def check_dependencies(table: Table) -> None:
    """ScheduleError unless every stage forwards and backwards each micro-batch once, in order.

    A forward needs its input received (stages after the first), a backward
    its forward and its output gradient received (stages before the last), a
    send the data it sends; the micro-batches are the distinct ones the first
    stage forwards.
    """
    k = len(table)
    micro = sorted({a.micro for a in table[0] if a.kind == "forward"})
    for s, actions in enumerate(table):
        have: set = set()  # ("act" | "grad" | "forward" | "backward", m) this stage holds
        for i, a in enumerate(actions):
            for need, what in _needs(a, s, k):
                if need not in have:
                    raise ScheduleError(f"stage {s}, action {i} ({a}): {what} before it")
            have |= _gives(a)
        for kind in ("forward", "backward"):
            done = sorted(a.micro for a in actions if a.kind == kind)
            if done != micro:
                raise ScheduleError(
                    f"stage {s} runs {kind} of micro-batches {done}, the pipeline has {micro}"
                )


def _needs(a: Action, s: int, k: int) -> list[tuple[tuple, str]]:
    if a.kind == "forward":
        return [(("act", a.micro), "its input is not received")] if s > 0 else []
    if a.kind == "backward":
        need = [(("forward", a.micro), "its forward did not run")]
        if s < k - 1:
            need.append((("grad", a.micro), "its output gradient is not received"))
        return need
    sends = [op for op in a.ops if op.kind == "send"]
    return [
        ((("forward" if op.what == "act" else "backward"), op.micro), f"{op} has no data")
        for op in sends
    ]


def _gives(a: Action) -> set:
    if a.kind != "comm":
        return {(a.kind, a.micro)}
    return {(op.what, op.micro) for op in a.ops if op.kind == "recv"}


def check(table: Table) -> None:
    """ScheduleError unless the table keeps its data dependencies and cannot deadlock."""
    if not table:
        raise ScheduleError("a schedule needs at least one stage")
    check_dependencies(table)
    play(table)


def bubble(table: Table, forward_cost: float = 1.0, backward_cost: float = 1.0) -> float:
    """Idle share of stage time from the first action to the last stage's end."""
    ends = play(table, forward_cost, backward_cost)
    span = max(ends)
    cost = {"forward": forward_cost, "backward": backward_cost}
    busy = sum(cost.get(a.kind, 0.0) for actions in table for a in actions)
    return 1.0 - busy / (span * len(table))


def peak_activations(table: Table) -> list[int]:
    """Per stage, the most micro-batches forwarded and not yet backwarded at once."""
    peaks = []
    for actions in table:
        held = peak = 0
        for a in actions:
            held += {"forward": 1, "backward": -1}.get(a.kind, 0)
            peak = max(peak, held)
        peaks.append(peak)
    return peaks
