"""Agreement at start: the ranks of one trainer compare their settings, data and model shapes."""

from __future__ import annotations

from .errors import ConfigMismatchError

_MISSING = "<not set>"
#: What to do when a fact differs, for the facts whose cause is known.
HINTS = {
    "data": (
        "the ranks read different data sets: put --data (or $HPCDIST_CACHE, where the "
        "built-in sets are cached) on a file system every node shares, or give every node "
        "an identical copy (a node-local cache is built per node with $HPCDIST_CACHE_SHARED=0)"
    ),
}


def check(guard, what: str, facts: dict) -> None:
    """Raise ConfigMismatchError on every rank unless all ranks of `guard` have equal `facts`.

    `facts` maps a setting's name to a picklable, comparable value. The
    message names each differing setting and which ranks hold which value.
    """
    every = guard.allgather(facts, what=f"every rank's {what} (agreement at start)")
    problems = []
    for key in sorted(set().union(*every)):
        values = [f.get(key, _MISSING) for f in every]
        if all(v == values[0] for v in values):
            continue
        groups: list[tuple[object, list[int]]] = []
        for r, v in enumerate(values):
            for value, ranks in groups:
                if value == v:
                    ranks.append(r)
                    break
            else:
                groups.append((v, [r]))
        held = ", ".join(f"rank(s) {ranks} have {value!r}" for value, ranks in groups)
        problems.append(f"{key}: {held}" + (f" ({HINTS[key]})" if key in HINTS else ""))
    if problems:
        raise ConfigMismatchError(
            f"the {guard.size} ranks of this trainer were given different {what}: "
            + "; ".join(problems)
        )


def comparable(settings: dict) -> dict:
    """Settings as the ranks compare them (lists as tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
