"""Search spaces: grid order and values, seeded random draws, errors that name the problem."""

import itertools
import math

import numpy as np
import pytest

from hpcdist.search import space


def test_builtin_space_has_at_least_8_valid_trials():
    sp = space.load(None)
    trials = sp.trials(0)
    assert len(trials) >= 8
    assert [t["trial"] for t in trials] == [f"t{i:03d}" for i in range(len(trials))]
    for t in trials:
        cfg = sp.config(t["params"], run_dir="x")
        assert cfg.data is None and cfg.epochs == sp.fixed["epochs"]


def test_grid_is_the_product_in_file_order(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(
        '[search]\nstrategy = "grid"\n[space]\nlr = [0.02, 0.1]\nhidden = ["64", "128,64"]\n'
        'activation = ["relu", "tanh", "elu"]\n[fixed]\nepochs = 5\n'
    )
    sp = space.load(f)
    got = [tuple(t["params"].values()) for t in sp.trials(7)]
    want = list(itertools.product([0.02, 0.1], ["64", "128,64"], ["relu", "tanh", "elu"]))
    assert got == want
    cfg = sp.config(sp.trials(0)[3]["params"], run_dir="r")
    assert cfg.hidden == [128, 64] and cfg.lr == 0.02 and cfg.activation == "relu"
    assert cfg.epochs == 5


def test_random_draws_follow_the_seed_and_the_ranges(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text(
        '[search]\nstrategy = "random"\nsamples = 200\n[space]\n'
        "lr = {low = 0.001, high = 1.0, log = true}\nbatch_size = {low = 8, high = 12}\n"
        'dropout = {low = 0.0, high = 0.5}\nactivation = ["relu", "tanh"]\n'
    )
    sp = space.load(f)
    a, b, c = sp.trials(1), sp.trials(1), sp.trials(2)
    assert a == b and a != c
    lr = np.array([t["params"]["lr"] for t in a])
    bs = [t["params"]["batch_size"] for t in a]
    assert lr.min() >= 0.001 and lr.max() <= 1.0
    # log-uniform: about half the draws below the geometric middle (0.0316)
    assert 0.35 < np.mean(lr < math.sqrt(0.001)) < 0.65
    assert set(bs) == {8, 9, 10, 11, 12} and all(isinstance(v, int) for v in bs)
    assert {t["params"]["activation"] for t in a} == {"relu", "tanh"}
    assert all(0.0 <= t["params"]["dropout"] <= 0.5 for t in a)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[space]\nlrr = [1]\n", r"\[space\] unknown setting\(s\) \['lrr'\]"),
        ("[space]\nlr = [0.1]\n[fixed]\nlr = 0.2\n", r"\['lr'\] are in both"),
        ("[space]\nlr = [-1.0]\n", "lr must be"),
        ("[space]\nrun_dir = ['a']\n", "the search sets them"),
        ('[search]\nstrategy = "random"\n[space]\nlr = [0.1]\n', "needs samples"),
        ('[search]\nstrategy = "bayes"\n[space]\nlr = [0.1]\n', "strategy must be one of"),
        ('[search]\nmetric = "f1"\n[space]\nlr = [0.1]\n', "metric must be one of"),
        ("[space]\nlr = {low = 0.1, high = 1.0}\n", "expected a list of values"),
        (
            '[search]\nstrategy = "random"\nsamples = 2\n[space]\nlr = {low = 1.0, high = 0.1}\n',
            "low < high",
        ),
        ("[search]\n", "names no setting"),
        ("[space]\nlr = [0.1]\n[extra]\n", r"unknown table\(s\) \['extra'\]"),
    ],
)
def test_bad_spaces_are_refused_naming_the_file_and_setting(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        space.load(f)
    assert str(f) in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="no such file .*nope.toml"):
        space.load(tmp_path / "nope.toml")


def test_the_space_file_in_docs_search_md_parses(tmp_path):
    from launch import ROOT

    text = (ROOT / "docs" / "search.md").read_text()
    block = text.split("The space file (TOML")[1].split("```\n", 1)[1].split("```")[0]
    f = tmp_path / "doc.toml"
    f.write_text(block)
    sp = space.load(f)
    assert sp.strategy == "grid" and sp.metric == "val_accuracy" and sp.fixed == {"epochs": 5}
    assert [t["params"] for t in sp.trials(0)] == [
        {"lr": lr, "hidden": h} for lr in (0.02, 0.1) for h in ("64", "128,64")
    ]


def test_each_group_gets_its_own_gpu_round_robin(monkeypatch):
    from hpcdist.search import scheduler

    monkeypatch.setattr(scheduler.devices, "visible_gpus", lambda: 2)
    assert [scheduler.group_device(g) for g in range(5)] == [f"gpu:{g % 2}" for g in range(5)]
    monkeypatch.setattr(scheduler.devices, "visible_gpus", lambda: 0)
    assert scheduler.group_device(3) == "cpu"
