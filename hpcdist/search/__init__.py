"""Hyperparameter search over rank groups: `mpirun -n N python -m hpcdist.search`.

space.py (the trials), journal.py (the shared, file-locked state), scheduler.py
(trials handed to rank groups), trial.py (one Trainer per trial), prune.py
(median, asha), results.py (results.csv, top.json), plots.py (search.png).
"""

from .journal import Journal, TrialState, states
from .prune import ASHAPruner, MedianPruner, Pruner
from .results import read_csv
from .run import SearchError, run
from .scheduler import Search
from .space import BUILTIN, SearchSpace, load, parse
from .trial import Outcome, TrialDiverged, run_trial

__all__ = [
    "BUILTIN",
    "ASHAPruner",
    "Journal",
    "MedianPruner",
    "Outcome",
    "Pruner",
    "Search",
    "SearchError",
    "SearchSpace",
    "TrialDiverged",
    "TrialState",
    "load",
    "parse",
    "read_csv",
    "run",
    "run_trial",
    "states",
]
