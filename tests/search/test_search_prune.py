"""Pruners against hand-worked cases of Optuna's median rule and Ray Tune's ASHA rule."""

import numpy as np
import pytest

from hpcdist.search import prune


def test_none_never_prunes():
    p = prune.create("none", 10)
    assert not p.should_prune("t9", 1, -1e9, {"t0": {1: 1.0}})


def test_median_waits_for_startup_trials_then_cuts_below_the_median():
    p = prune.create("median", 10, {"startup_trials": 3})
    reports = {"t0": {1: 0.5, 2: 0.7}, "t1": {1: 0.6}, "t5": {1: 0.9}}
    # two others at epoch 2 only: too few
    assert not p.should_prune("t5", 2, 0.1, reports)
    # three others at epoch 1 (0.5, 0.6 and t5's own value excluded -> only 2) -> too few
    assert not p.should_prune("t5", 1, 0.1, reports)
    reports["t2"] = {1: 0.8}
    others = [0.5, 0.6, 0.8]  # t5's own report is not among the others
    assert p.should_prune("t5", 1, np.median(others) - 1e-9, reports)
    assert not p.should_prune("t5", 1, np.median(others), reports)
    assert not p.should_prune("t5", 10, 0.0, reports)  # the last epoch is never cut
    assert prune.create("median", 10).startup_trials == 5  # Optuna's default


def test_asha_rungs_and_quantile_cutoff():
    p = prune.create("asha", 20)
    assert (p.grace_period, p.reduction_factor) == (1, 4)  # Ray Tune's defaults
    assert p.rungs == [1, 4, 16]
    q = prune.create("asha", 9, {"grace_period": 2, "reduction_factor": 2})
    assert q.rungs == [2, 4, 8]
    assert not q.should_prune("t3", 3, 0.0, {"t0": {3: 0.9}})  # not a rung
    assert not q.should_prune("t0", 2, 0.0, {})  # first at the rung: continues
    recorded = {"t0": {2: 0.2}, "t1": {2: 0.4}, "t2": {2: 0.9}}
    cutoff = np.percentile([0.2, 0.4, 0.9], 50)  # 1 - 1/2 quantile of the earlier values
    assert q.should_prune("t3", 2, cutoff - 1e-9, recorded)
    assert not q.should_prune("t3", 2, cutoff, recorded)
    r4 = prune.create("asha", 20)
    vals = {f"t{i}": {1: v} for i, v in enumerate([0.1, 0.2, 0.3, 0.4, 0.5])}
    cut = np.percentile([0.1, 0.2, 0.3, 0.4, 0.5], 75)
    assert r4.should_prune("t9", 1, cut - 1e-9, vals) and not r4.should_prune("t9", 1, cut, vals)


@pytest.mark.parametrize(
    "name, settings, match",
    [
        ("hyperband", {}, "--prune must be one of"),
        ("asha", {"reduction_factor": 1}, "reduction_factor must be an integer >= 2"),
        ("asha", {"grace_period": 0}, "grace_period must be an integer >= 1"),
        ("median", {"startup_trials": -1}, "startup_trials must be an integer >= 0"),
    ],
)
def test_bad_pruner_settings(name, settings, match):
    with pytest.raises(ValueError, match=match):
        prune.create(name, 5, settings)
