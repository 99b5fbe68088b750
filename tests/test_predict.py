"""python -m hpcdist.predict: the same file at 1 and 3 ranks, in input order, against numpy."""

import h5py
import numpy as np
import pytest
from launch import run_mpi
from mlp_reference import checkpoint_probs, val_arrays

from hpcdist.predict import block

pytestmark = pytest.mark.launcher


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits checkpoint (8 epochs, 1 rank) and the environment its runs share."""
    base = tmp_path_factory.mktemp("trained")
    env = {"HPCDIST_CACHE": str(base / "cache")}
    args = ["-m", "hpcdist.train", "--run-dir", str(base / "run"), "--epochs", "8", "--no-progress"]
    res = run_mpi(1, args, 180, env=env)
    assert res.returncode == 0, res.output[-3000:]
    ckpt = sorted((base / "run" / "checkpoints").glob("ckpt-*.h5"))[-1]
    digits = next((base / "cache").glob("digits-*"))
    return ckpt, env, digits


def predict(n, *flags, env):
    return run_mpi(n, ["-m", "hpcdist.predict", *map(str, flags)], 180, env=env)


def test_blocks_cover_every_row_once_in_whole_chunks():
    for n in (0, 1, 63, 64, 359, 1000):
        for size in (1, 2, 3, 7):
            spans = [block(n, r, size, 64) for r in range(size)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
            assert all(lo % 64 == 0 or lo == n for lo, _ in spans)
            sizes = [-(-(hi - lo) // 64) for lo, hi in spans]
            assert max(sizes) - min(sizes) <= 1


def test_one_and_three_ranks_write_identical_files_in_input_order(tmp_path, trained):
    ckpt, env, digits = trained
    outs = []
    for n in (1, 3):
        out = tmp_path / f"p{n}.h5"
        res = predict(n, "--checkpoint", ckpt, "--output", out, env=env)
        assert res.returncode == 0, res.output[-3000:]
        assert f"on {n} rank(s)" in res.stdout and "Offline" in res.stdout
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    x, y = val_arrays(digits)
    want = checkpoint_probs(ckpt, x)
    with h5py.File(outs[1], "r") as f:
        probs, labels, targets = f["probabilities"][...], f["labels"][...], f["targets"][...]
    assert probs.dtype == np.float32 and probs.shape == (359, 10)
    np.testing.assert_allclose(probs, want, atol=2e-6)
    np.testing.assert_array_equal(targets, y)
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    assert np.mean(labels == want.argmax(axis=1)) == 1.0


@pytest.mark.parametrize("kind", ["npy", "npz", "h5"])
def test_input_files_keep_their_row_order(tmp_path, trained, kind):
    ckpt, env, digits = trained
    x, y = val_arrays(digits)
    order = np.random.default_rng(3).permutation(len(x))[:200]
    xs, ys = x[order], y[order]
    path = tmp_path / f"in.{kind}"
    if kind == "npy":
        np.save(path, xs)
    elif kind == "npz":
        np.savez(path, x=xs, y=ys)
    else:
        with h5py.File(path, "w") as f:
            f["x"], f["y"] = xs, ys
    out = tmp_path / "out.h5"
    res = predict(3, "--checkpoint", ckpt, "--input", path, "--output", out, env=env)
    assert res.returncode == 0, res.output[-3000:]
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["probabilities"][...], checkpoint_probs(ckpt, xs), atol=2e-6)
        assert ("targets" in f) == (kind != "npy")
        if kind != "npy":
            np.testing.assert_array_equal(f["targets"][...], ys)


def test_server_mode_reports_ordered_latency_percentiles(trained):
    ckpt, env, _ = trained
    res = predict(2, "--checkpoint", ckpt, "--server", "--qps", 300, "--queries", 300, env=env)
    assert res.returncode == 0, res.output[-3000:]
    line = next(x for x in res.stdout.splitlines() if "Server at 300 QPS" in x)
    p = [float(line.split(f"p{q} ")[1].split(" ms")[0]) for q in (50, 90, 95, 99)]
    assert 0 < p[0] <= p[1] <= p[2] <= p[3], line
    achieved = float(line.split("(")[1].split(" achieved")[0])
    assert 150 < achieved < 400, line  # Poisson arrivals at 300/s over ~1 s


def test_server_validity_is_p99_against_the_bound():
    from hpcdist.predict import server_line

    stats = {"target_qps": 50.0, "achieved_qps": 49.0, "p50_ms": 1.0, "p90_ms": 2.0}
    stats.update({"p95_ms": 3.0, "p99_ms": 4.0})
    assert server_line(stats, None).endswith("p99 4.000 ms")
    assert server_line(stats, 4.0).endswith("VALID for a p99 bound of 4 ms")
    assert server_line(stats, 3.9).endswith("INVALID for a p99 bound of 3.9 ms")


def test_bad_input_is_refused_naming_it(tmp_path, trained):
    ckpt, env, _ = trained
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((5, 7), np.float32))
    res = predict(2, "--checkpoint", ckpt, "--input", bad, env=env)
    assert res.returncode == 2 and "input has 7 features, the model 64" in res.stderr
    res = predict(1, "--checkpoint", tmp_path / "none.h5", env=env)
    assert res.returncode == 2 and "no such model file" in res.stderr
