"""The six forms: one network, one data set, one global batch; only the split differs."""

import pytest

from hpcdist import config
from hpcdist.study import Plan, forms
from hpcdist.train import build_parser

COMMON = ["--epochs", "3", "--seed", "1", "--hidden", "32,16"]


def settings(form):
    return config.from_args(build_parser().parse_args(form.command(COMMON)[2:]))


@pytest.mark.parametrize("workers", [2, 3])
def test_every_form_trains_the_same_network_on_the_same_global_batch(workers):
    fs = forms(Plan(workers=workers, batch=8))
    assert [f.key for f in fs] == list("abcdef")
    for f in fs:
        cfg = settings(f)
        replicas = workers if cfg.model_parallel == "none" else workers // cfg.mp_size
        assert cfg.batch_size * replicas == 8 * workers, f.name
        assert (cfg.hidden, cfg.epochs, cfg.seed, cfg.model) == ([32, 16], 3, 1, "mlp"), f.name
        assert f.ranks == workers + cfg.ps, f.name


def test_the_forms_differ_in_what_the_question_asks():
    by = {f.key: settings(f) for f in forms(Plan(workers=3, staleness=2, micro_batches=4))}
    assert by["a"].exchange == "allreduce" and by["a"].ps == 0
    assert (by["b"].exchange, by["b"].replicas_to_aggregate) == ("ps-sync", 0)
    assert (by["c"].exchange, by["c"].replicas_to_aggregate) == ("ps-sync", 2)  # one backup
    assert (by["d"].exchange, by["d"].staleness) == ("ps-async", 2)
    assert (by["e"].model_parallel, by["e"].mp_size) == ("tensor", 3)
    assert (by["f"].model_parallel, by["f"].mp_size, by["f"].micro_batches) == ("pipeline", 3, 4)


def test_bad_plans_are_named():
    with pytest.raises(ValueError, match="at least 2 workers"):
        forms(Plan(workers=1))
    with pytest.raises(ValueError, match=r"unknown study form\(s\) \['g'\]"):
        forms(Plan(keys=("a", "g")))
    assert [f.key for f in forms(Plan(keys=("f", "a")))] == ["f", "a"]
