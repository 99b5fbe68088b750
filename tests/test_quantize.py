"""int8 per-channel quantization: the rule against numpy, the size and accuracy bounds on digits,
and predict / ensemble taking the int8 file."""

import json

import h5py
import numpy as np
import pytest
from launch import run_mpi
from mlp_reference import checkpoint_probs, forward_probs, val_arrays

from hpcdist import quantize
from hpcdist.ckptfile import load_checkpoint


def test_per_channel_rule_against_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(33, 7)).astype(np.float32) * np.array([1, 10, 0.01, 3, 1, 1, 1])
    w[:, 4] = 0.0  # a dead channel
    q, scale = quantize.quantize_array(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (7,)
    for j in range(7):
        col = w[:, j].astype(np.float64)
        s = np.abs(col).max() / 127 if np.abs(col).max() > 0 else 1.0
        assert scale[j] == pytest.approx(s, rel=1e-6)
        np.testing.assert_array_equal(q[:, j], np.clip(np.rint(col / scale[j]), -127, 127))
        assert np.abs(col - q[:, j] * float(scale[j])).max() <= float(scale[j]) / 2 + 1e-9
    assert np.abs(q).max() == 127
    with pytest.raises(ValueError, match="2-D"):
        quantize.quantize_array(np.zeros(3))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("q")
    env = {"HPCDIST_CACHE": str(base / "cache")}
    res = run_mpi(
        1, ["-m", "hpcdist.train", "--run-dir", str(base / "run"), "--no-progress"], 240, env
    )
    assert res.returncode == 0, res.output[-3000:]
    ckpt = sorted((base / "run" / "checkpoints").glob("ckpt-*.h5"))[-1]
    return base, ckpt, env, next((base / "cache").glob("digits-*"))


def _dequantized(path):
    """The int8 file's weights read with h5py alone: q * scale per column, biases as stored."""
    out = {}
    with h5py.File(path, "r") as f:
        for name in f["int8"]:
            out[name] = f[f"int8/{name}/q"][...].astype(np.float64) * f[f"int8/{name}/scale"][...]
        for name in f["float32"]:
            out[name] = f[f"float32/{name}"][...]
    return out


@pytest.mark.launcher
def test_the_digits_model_in_int8_is_under_0_3x_and_loses_under_a_point(trained):
    base, ckpt, env, digits = trained
    out = base / "q.h5"
    res = run_mpi(
        1, ["-m", "hpcdist.quantize", "--checkpoint", str(ckpt), "--output", str(out)], 120, env
    )
    assert res.returncode == 0, res.output[-3000:]
    params = load_checkpoint(ckpt, rank=None).arrays["params"]
    float_bytes = sum(a.size * 4 for a in params.values())
    with h5py.File(out, "r") as f:
        stored = sum(f[k].nbytes for k in _datasets(f))
        assert all(f[f"int8/{n}/q"].dtype == np.int8 for n in f["int8"])
    assert stored <= 0.3 * float_bytes, (stored, float_bytes)
    assert f"({stored / float_bytes:.3f}x)" in res.stdout
    x, y = val_arrays(digits)
    acc = np.mean(checkpoint_probs(ckpt, x).argmax(1) == y)
    activation = load_checkpoint(ckpt, rank=None).meta["config"]["activation"]
    acc8 = np.mean(forward_probs(_dequantized(out), activation, x).argmax(1) == y)
    assert acc >= 0.95 and acc8 >= acc - 0.01, (acc, acc8)
    assert f"{acc:.4f} -> {acc8:.4f}" in res.stdout


def _datasets(f):
    names = []
    f.visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
    return names


@pytest.mark.launcher
def test_predict_and_ensemble_take_the_int8_file(trained, tmp_path):
    base, ckpt, env, digits = trained
    q = base / "q2.h5"
    res = run_mpi(
        1, ["-m", "hpcdist.quantize", "--checkpoint", str(ckpt), "--output", str(q)], 120, env
    )
    assert res.returncode == 0, res.output[-3000:]
    out = tmp_path / "p.h5"
    res = run_mpi(
        3, ["-m", "hpcdist.predict", "--checkpoint", str(q), "--output", str(out)], 120, env
    )
    assert res.returncode == 0, res.output[-3000:]
    x, y = val_arrays(digits)
    activation = load_checkpoint(ckpt, rank=None).meta["config"]["activation"]
    want = forward_probs(_dequantized(q), activation, x)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["probabilities"][...], want, atol=2e-6)
    doc = tmp_path / "e.json"
    args = ["-m", "hpcdist.ensemble", "--members", str(q), str(ckpt), "--output", str(doc)]
    res = run_mpi(2, args, 120, env)
    assert res.returncode == 0, res.output[-3000:]
    members = json.loads(doc.read_text())["members"]
    assert members[0]["val_accuracy"] == pytest.approx(np.mean(want.argmax(1) == y))
    res = run_mpi(
        1,
        ["-m", "hpcdist.quantize", "--checkpoint", str(q), "--output", str(tmp_path / "x.h5")],
        60,
        env,
    )
    assert res.returncode == 2 and "already quantized" in res.stderr
