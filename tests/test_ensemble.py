"""Ensembles: soft and hard voting, weights and ties against scikit-learn's VotingClassifier;
python -m hpcdist.ensemble over a search's top 3 at 1 and 3 ranks against a numpy forward pass."""

import json

import numpy as np
import pytest
from launch import run_mpi
from mlp_reference import checkpoint_probs, val_arrays

from hpcdist.ensemble import disagreement, hard_vote, soft_vote

sklearn = pytest.importorskip("sklearn")
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.ensemble import VotingClassifier  # noqa: E402


class Fixed(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose probabilities for sample i are proba[i] (X holds i)."""

    def __init__(self, proba=None):
        self.proba = proba

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return self.proba[X[:, 0].astype(int)]

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)


def sklearn_vote(probas, voting, weights):
    m, n, c = probas.shape
    x = np.arange(n)[:, None]
    y = np.arange(n) % c  # every class present, so the label encoder is the identity
    clf = VotingClassifier(
        [(f"m{i}", Fixed(p)) for i, p in enumerate(probas)], voting=voting, weights=weights
    )
    return clf.fit(x, y).predict(x)


@pytest.mark.parametrize("voting", ["soft", "hard"])
@pytest.mark.parametrize(
    "weights", [None, [1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0, 0.5], [0, 0, 1, 1]]
)
def test_votes_match_scikit_learn_ties_included(voting, weights):
    rng = np.random.default_rng(7)
    m, n, c = 4, 400, 3
    # probabilities on a coarse grid (quarters): many exact ties in means and counts
    raw = rng.integers(0, 3, size=(m, n, c)).astype(np.float64)
    raw[raw.sum(axis=2) == 0] = 1.0
    probas = raw / raw.sum(axis=2, keepdims=True)
    want = sklearn_vote(probas, voting, weights)
    if voting == "soft":
        got = soft_vote(probas, weights)
    else:
        got = hard_vote(probas.argmax(axis=2), c, weights)
    np.testing.assert_array_equal(got, want)
    labels = probas.argmax(axis=2)
    ties = 0
    for i in range(n):  # how many decisions were ties (so the tie rule was exercised)
        w = np.ones(m) if weights is None else np.asarray(weights)
        score = (
            np.average(probas[:, i], axis=0, weights=w)
            if voting == "soft"
            else np.bincount(labels[:, i], weights=w, minlength=c)
        )
        ties += int((score == score.max()).sum() > 1)
    assert ties > 10


def test_hand_worked_ties_go_to_the_lowest_class():
    p = np.array([[[0.6, 0.4]], [[0.4, 0.6]]])
    assert soft_vote(p).tolist() == [0]
    assert soft_vote(p, [1, 2]).tolist() == [1]
    assert hard_vote(np.array([[1], [0]]), 2).tolist() == [0]
    assert hard_vote(np.array([[1], [0]]), 2, [2, 1]).tolist() == [1]
    with pytest.raises(ValueError, match="want 2 non-negative numbers"):
        soft_vote(p, [1, 2, 3])


def test_disagreement_against_loops():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=(3, 200))
    some, pair = disagreement(labels)
    assert some == np.mean([len(set(labels[:, i])) > 1 for i in range(200)])
    pairs = [(a, b) for a in range(3) for b in range(a + 1, 3)]
    assert pair == pytest.approx(np.mean([np.mean(labels[a] != labels[b]) for a, b in pairs]))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    base = tmp_path_factory.mktemp("ens")
    env = {"HPCDIST_CACHE": str(base / "cache")}
    space = base / "space.toml"
    space.write_text('[space]\nlr = [0.03, 0.1]\nhidden = ["32", "64,32"]\n[fixed]\nepochs = 3\n')
    args = ["-m", "hpcdist.search", "--space", str(space), "--run-dir", str(base / "s")]
    res = run_mpi(2, args, 240, env)
    assert res.returncode == 0, res.output[-3000:]
    return base / "s", env, next((base / "cache").glob("digits-*"))


@pytest.mark.launcher
@pytest.mark.parametrize("n, voting, weights", [(3, "soft", None), (1, "hard", [3.0, 1.0, 1.0])])
def test_ensemble_of_the_top_3_at_1_and_3_ranks(searched, n, voting, weights):
    run, env, digits = searched
    args = ["-m", "hpcdist.ensemble", "--search-dir", str(run), "--voting", voting]
    if weights:
        args += ["--weights", ",".join(map(str, weights))]
    res = run_mpi(n, args, 180, env)
    assert res.returncode == 0, res.output[-3000:]
    top = json.loads((run / "top.json").read_text())
    doc = json.loads((run / "ensemble.json").read_text())
    assert [m["trial"] for m in doc["members"]] == [e["trial"] for e in top]
    assert doc["voting"] == voting
    x, y = val_arrays(digits)
    probas = np.stack([checkpoint_probs(run / e["checkpoint"], x) for e in top])
    for member, p, entry in zip(doc["members"], probas, top, strict=True):
        assert abs(member["val_accuracy"] - np.mean(p.argmax(1) == y)) <= 1 / len(y)
        assert member["val_accuracy"] == pytest.approx(entry["val_accuracy"])  # as training saw it
    want = sklearn_vote(probas, voting, weights)
    assert abs(doc["ensemble_val_accuracy"] - np.mean(want == y)) <= 1 / len(y)
    lines = res.stdout.splitlines()
    table = [ln for ln in lines if ln.split() and ln.split()[0] in {e["trial"] for e in top}]
    assert len(table) == 3 and any(ln.startswith(f"ensemble ({voting})") for ln in lines)
    assert "members disagree on" in res.stdout


@pytest.mark.launcher
def test_bad_members_are_refused(searched, tmp_path):
    run, env, _ = searched
    res = run_mpi(2, ["-m", "hpcdist.ensemble", "--search-dir", str(tmp_path)], 60, env)
    assert res.returncode == 2 and "top.json not found" in res.stderr
    res = run_mpi(
        1, ["-m", "hpcdist.ensemble", "--search-dir", str(run), "--weights", "1,2"], 60, env
    )
    assert res.returncode == 2 and "want 3 non-negative numbers" in res.stderr
