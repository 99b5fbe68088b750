"""The study's conclusion, written from its table: which form reached the target first, and why.

Time to the target is steps to the target times seconds per step, so the
paragraph compares the fastest form with the next one on both factors and
says which of the two its lead comes from; it names ties, the forms that never
reached the target and the ones that failed. No sentence is written that the
rows do not support.
"""

from __future__ import annotations

import math

from .report import TIE, Row, mean, ranking, spread


def _names(rows: list[Row]) -> str:
    names = [f"({r.key}) {r.name}" for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _why(best: Row, other: Row) -> str:
    """Why `best` beat `other`: fewer steps or faster steps, with the figures."""
    steps_b, steps_o = mean(best.target_steps), mean(other.target_steps)
    per_b, per_o = best.step_time, other.step_time
    step_ratio, time_ratio = steps_o / steps_b, per_o / per_b
    cause = "fewer steps" if step_ratio > time_ratio else "faster steps"
    text = (
        f"Against the next form, ({other.key}) {other.name} ({other.time:.2f} s), it needed "
        f"{steps_b:.0f} steps to the target against {steps_o:.0f} ({step_ratio:.2f}x) and spent "
        f"{per_b * 1e3:.2f} ms per step against {per_o * 1e3:.2f} ms ({time_ratio:.2f}x), so its "
        f"lead comes mainly from {cause}"
    )
    wire_b, wire_o = mean(best.wire), mean(other.wire)
    if cause == "faster steps" and wire_o > 0:
        text += f"; it moves {wire_b:,.0f} bytes per step on the wire against {wire_o:,.0f}"
    return text + "."


def conclusion(rows: list[Row], target: float, tie: float = TIE) -> str:
    """A paragraph computed from `rows` (see the module docstring)."""
    winners, rest = ranking(rows, tie)
    parts = []
    if not winners:
        ran = [r for r in rows if r.ok]
        parts.append(f"No form reached validation accuracy {target:g} in every seed here.")
        if ran:
            top = max(ran, key=lambda r: mean(r.finals))
            parts.append(
                f"The highest final accuracy was ({top.key}) {top.name}'s {mean(top.finals):.4f}."
            )
    else:
        best = winners[0]
        seeds = f"mean over {best.seeds} seed{'s' if best.seeds > 1 else ''}"
        if len(winners) > 1:
            times = ", ".join(f"{r.time:.2f} s" for r in winners)
            parts.append(
                f"{_names(winners)} tie as the fastest to validation accuracy {target:g} here "
                f"({times}; within {tie:.0%} of each other, {seeds}); ({best.key}) {best.name} "
                "was ahead by less than that."
            )
        else:
            parts.append(
                f"({best.key}) {best.name} reached validation accuracy {target:g} fastest here: "
                f"{best.time:.2f} s of training ({seeds})."
            )
        other = winners[1] if len(winners) > 1 else (rest[0] if rest else None)
        if other is not None:
            parts.append(_why(best, other))
            parts.extend(_unsettled(best, other))
        if rest:
            last = rest[-1]
            parts.append(
                f"The slowest form to get there, ({last.key}) {last.name}, took "
                f"{last.time:.2f} s ({last.time / best.time:.2f}x)."
            )
    parts.extend(_shortfalls(rows, target))
    return " ".join(parts)


def _unsettled(best: Row, other: Row) -> list[str]:
    """A warning when the gap to the next form is inside the seeds' spread."""
    gap, noise = other.time - best.time, max(spread(best.times), spread(other.times))
    if math.isnan(noise) or gap >= noise:
        return []
    return [
        f"The gap ({gap:.2f} s) is smaller than the spread over seeds (standard deviation up "
        f"to {noise:.2f} s), so these runs do not settle the order of the two."
    ]


def _shortfalls(rows: list[Row], target: float) -> list[str]:
    out = []
    never = [r for r in rows if r.ok and not r.reached_all]
    for r in never:
        got = f"reached it in {len(r.times)} of {r.seeds} seeds" if r.times else "never reached it"
        out.append(f"({r.key}) {r.name} {got} (final accuracy {mean(r.finals):.4f}).")
    failed = [r for r in rows if r.errors]
    for r in failed:
        out.append(f"({r.key}) {r.name} failed in {len(r.errors)} of {r.seeds} runs: {r.errors[0]}")
    return out
