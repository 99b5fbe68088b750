"""The search space: a TOML file (or the built-in one) -> the trials, each a set of settings.

    [search]
    strategy = "grid"            # or "random", with samples = N
    metric = "val_accuracy"      # or "val_loss"
    [space]                      # TrainConfig settings -> lists (random: {low, high, log})
    lr = [0.02, 0.1]
    hidden = ["64", "128,64"]
    [fixed]                      # TrainConfig settings for every trial
    epochs = 5

Grid: every combination, in the order the [space] table lists them (the last
setting changes fastest). Random: `samples` draws from a generator seeded by
the search's seed; a list is a uniform choice, {low, high} a uniform real
(log = true: log-uniform; two integers without log: a uniform integer).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: What a search may optimise, and which way.
METRICS = {"val_accuracy": "max", "val_loss": "min"}
STRATEGIES = ("grid", "random")
#: Settings the search owns for every trial.
OWNED = ("run_dir", "resume", "overwrite")
#: Keys of [search] besides strategy, samples and metric (the pruners' settings).
PRUNE_KEYS = ("grace_period", "reduction_factor", "startup_trials")

#: The built-in space: 8 configurations on the digits, a few seconds each.
BUILTIN = {
    "search": {"strategy": "grid", "metric": "val_accuracy"},
    "space": {
        "lr": [0.02, 0.1],
        "hidden": ["64", "128,64"],
        "activation": ["relu", "tanh"],
    },
    "fixed": {"epochs": 8, "warmup_epochs": 1.0},
}


@dataclass
class SearchSpace:
    """A parsed space: how to draw, what to optimise, the searched and the fixed settings."""

    strategy: str = "grid"
    metric: str = "val_accuracy"
    samples: int = 0
    space: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    prune: dict = field(default_factory=dict)
    source: str = "<built-in>"

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    @property
    def names(self) -> list[str]:
        """The searched settings, in file order."""
        return list(self.space)

    def trials(self, seed: int = 0) -> list[dict]:
        """[{"trial": "t000", "params": {setting: value}}, ...] in a fixed order."""
        draws = self._grid() if self.strategy == "grid" else self._random(seed)
        return [{"trial": f"t{i:03d}", "params": p} for i, p in enumerate(draws)]

    def _grid(self) -> list[dict]:
        names = self.names
        return [
            dict(zip(names, combo, strict=True))
            for combo in itertools.product(*self.space.values())
        ]

    def _random(self, seed: int) -> list[dict]:
        rng = np.random.default_rng([seed, 0x5EA2C4])
        return [
            {k: _draw(rng, spec) for k, spec in self.space.items()} for _ in range(self.samples)
        ]

    def config(self, params: dict, **owned) -> TrainConfig:
        """The TrainConfig of one trial: fixed settings, its own, then what the search owns."""
        try:
            return TrainConfig.from_dict({**self.fixed, **params, **owned})
        except ValueError as exc:
            raise ValueError(f"{self.source}: trial settings {params}: {exc}") from None


def _draw(rng, spec):
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if log:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if isinstance(low, int) and isinstance(high, int):
        return int(rng.integers(low, high + 1))
    return float(rng.uniform(low, high))


def load(path: str | Path | None) -> SearchSpace:
    """The space in TOML file `path`, or the built-in one for None; ValueError names the problem."""
    if path is None:
        return parse(BUILTIN, "<built-in space>")
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"--space: no such file {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"--space {path}: not valid TOML: {e}") from None
    return parse(table, str(path))


def parse(table: dict, source: str) -> SearchSpace:
    """A SearchSpace from the tables of a space file, every setting checked."""
    unknown = sorted(set(table) - {"search", "space", "fixed"})
    if unknown:
        raise ValueError(f"{source}: unknown table(s) {unknown}; known: search, space, fixed")
    search, space, fixed = (dict(table.get(k, {})) for k in ("search", "space", "fixed"))
    strategy = search.pop("strategy", "grid")
    metric = search.pop("metric", "val_accuracy")
    samples = search.pop("samples", 0)
    prune = {k: search.pop(k) for k in PRUNE_KEYS if k in search}
    if search:
        raise ValueError(
            f"{source}: unknown [search] key(s) {sorted(search)}; known: strategy, samples, "
            f"metric, {', '.join(PRUNE_KEYS)}"
        )
    if strategy not in STRATEGIES:
        raise ValueError(
            f"{source}: [search] strategy must be one of {STRATEGIES}, got {strategy!r}"
        )
    if metric not in METRICS:
        raise ValueError(
            f"{source}: [search] metric must be one of {list(METRICS)}, got {metric!r}"
        )
    if strategy == "random" and (not isinstance(samples, int) or samples < 1):
        raise ValueError(f"{source}: strategy 'random' needs samples = N >= 1, got {samples!r}")
    out = SearchSpace(strategy, metric, samples, space, fixed, prune, source)
    _check(out)
    return out


def _check(sp: SearchSpace) -> None:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for table, names in (("space", sp.space), ("fixed", sp.fixed)):
        bad = sorted(set(names) - known)
        if bad:
            raise ValueError(f"{sp.source}: [{table}] unknown setting(s) {bad}")
        owned = sorted(set(names) & set(OWNED))
        if owned:
            raise ValueError(f"{sp.source}: [{table}] may not set {owned}: the search sets them")
    both = sorted(set(sp.space) & set(sp.fixed))
    if both:
        raise ValueError(f"{sp.source}: setting(s) {both} are in both [space] and [fixed]")
    if not sp.space:
        raise ValueError(f"{sp.source}: [space] names no setting to search")
    for name, spec in sp.space.items():
        _check_spec(sp, name, spec)
    # Every grid point (the first random draw) is a valid TrainConfig, or the error names it.
    for trial in sp.trials(0) if sp.strategy == "grid" else sp.trials(0)[:1]:
        sp.config(trial["params"])


def _check_spec(sp: SearchSpace, name: str, spec) -> None:
    where = f"{sp.source}: [space] {name}"
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{where}: an empty list")
        for value in spec:
            sp.config({name: value})
        return
    if sp.strategy == "grid" or not isinstance(spec, dict):
        raise ValueError(
            f"{where}: expected a list of values"
            + ("" if sp.strategy == "grid" else " or a table {low, high, log}")
            + f", got {spec!r}"
        )
    extra = sorted(set(spec) - {"low", "high", "log"})
    lo, hi = spec.get("low"), spec.get("high")
    nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
    if extra or not nums or not lo < hi or (spec.get("log") and lo <= 0):
        raise ValueError(
            f"{where}: expected {{low, high, log}} with low < high (low > 0 with log), got {spec!r}"
        )
    for value in (lo, hi):
        sp.config({name: value})
