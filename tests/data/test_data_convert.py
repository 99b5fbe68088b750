"""Converter: CSV and .npz to HDF5 shards with a manifest, --verify, chunking along samples."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from launch import clean_env

from hpcdist.data import HDF5Source
from hpcdist.data.convert import main, verify
from hpcdist.errors import DataError


def test_npz_to_shards_manifest_and_verify(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.random((103, 5)).astype(np.float32), rng.integers(0, 9, 103)
    np.savez(tmp_path / "in.npz", x=x, y=y)
    out = tmp_path / "shards"
    assert (
        main([str(tmp_path / "in.npz"), "-o", str(out), "-n", "4", "--chunk-rows", "8", "--verify"])
        == 0
    )
    assert "verified 103 records" in capsys.readouterr().out
    src = HDF5Source(str(out))
    assert src.counts == [25, 26, 26, 26]
    with h5py.File(out / "shard-00001.h5") as f:
        assert f["features"].chunks == (8, 5)
    got = np.concatenate([src.read(i, 0, n)[0] for i, n in enumerate(src.counts)])
    np.testing.assert_array_equal(got, x)
    src.close()
    with h5py.File(out / "shard-00002.h5", "a") as f:
        f["labels"][0] += 1
    with pytest.raises(DataError, match="shard-00002.h5: contents differ"):
        verify(str(out / "manifest.json"), x, y)


def test_csv_cli_with_header_and_skip(tmp_path):
    (tmp_path / "a.csv").write_text("f1,f2,label\n1,2,0\n3,x,1\n5,6,1\n")
    out = tmp_path / "s"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpcdist.data.convert",
            str(tmp_path / "a.csv"),
            "-o",
            str(out),
            "-n",
            "2",
            "--skip-header",
            "1",
            "--on-bad",
            "skip",
            "--verify",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1" in proc.stderr and "verified 2 records" in proc.stdout
    src = HDF5Source(str(out))
    assert src.counts == [1, 1] and src.read(1, 0, 1)[1].tolist() == [1]


def _convert(tmp_path, text: bytes, *flags):
    (tmp_path / "in.csv").write_bytes(text)
    out = tmp_path / "out"
    return main([str(tmp_path / "in.csv"), "-o", str(out), "-n", "1", *flags]), out


def _read_back(out):
    src = HDF5Source(str(out))
    x, y = src.read(0, 0, src.counts[0])[:2]
    src.close()
    return np.asarray(x), np.asarray(y)


@pytest.mark.parametrize("on_bad", ["raise", "skip"])
def test_non_utf8_line_is_a_bad_record_naming_file_and_line(tmp_path, capsys, on_bad):
    """Was: a bare UnicodeDecodeError naming no file or line, with --on-bad skip too."""
    rc, out = _convert(tmp_path, b"1.0,2.0,3\n4.0,\xff5,1\n6,7,2\n", "--on-bad", on_bad)
    if on_bad == "raise":
        assert rc == 1
        err = capsys.readouterr().err
        assert "in.csv:2: bad record: not UTF-8 text (byte 0xff at column 5)" in err
        assert "Traceback" not in err
    else:
        assert rc == 0 and "skipped 1" in capsys.readouterr().err
        np.testing.assert_array_equal(_read_back(out)[1], [3, 2])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_nonfinite_features_are_bad_records(tmp_path, capsys, value):
    rc, _ = _convert(tmp_path, f"1.0,2.0,3\n4.0,{value},1\n".encode())
    assert rc == 1 and f"in.csv:2: bad record: field 2: {value!r} is not finite" in (
        capsys.readouterr().err
    )
    x = np.array([[1.0, np.nan]], np.float32)
    np.savez(tmp_path / "n.npz", x=x, y=np.array([0]))
    assert main([str(tmp_path / "n.npz"), "-o", str(tmp_path / "o2"), "-n", "1"]) == 1
    assert "n.npz: record 0: NaN or inf among its features" in capsys.readouterr().err


def test_verify_treats_equal_nans_as_equal(tmp_path):
    """Was: --verify said the contents differ wherever a NaN was stored."""
    x = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    y = np.array([0, 1])
    from hpcdist.data.convert import write_shards

    manifest = write_shards(x, y, str(tmp_path / "s"), 1)
    assert verify(manifest, x, y) == 2
    with pytest.raises(DataError, match="contents differ"):
        verify(manifest, np.array([[1.0, 0.0], [2.0, 3.0]], np.float32), y)


@pytest.mark.parametrize("label, flags", [("12", ["--num-classes", "10"]), ("-1", [])])
def test_labels_outside_the_classes_are_bad_records(tmp_path, capsys, label, flags):
    rc, _ = _convert(tmp_path, f"1,2,3\n4,5,{label}\n".encode(), *flags)
    want = "[0, 10)" if flags else ">= 0"
    assert rc == 1
    assert f"in.csv:2: bad record: label {label} outside the classes {want}" in (
        capsys.readouterr().err
    )
    rc, out = _convert(tmp_path, f"1,2,3\n4,5,{label}\n".encode(), *flags, "--on-bad", "skip")
    assert rc == 0 and "skipped 1" in capsys.readouterr().err
    np.testing.assert_array_equal(_read_back(out)[1], [3])


def test_quoted_fields_and_record_defaults(tmp_path, capsys):
    """A quoted field holding the delimiter is one field; --record-defaults fills an empty
    field (the seed's CSV with a missing field) and the count of filled fields is printed."""
    text = b'1.5,"2",0\n3,,1\n"4","5",2\n'
    rc, out = _convert(tmp_path, text, "--record-defaults", "0,-7.5,0", "--verify")
    assert rc == 0 and "1 field(s) filled from defaults" in capsys.readouterr().err
    x, y = _read_back(out)
    np.testing.assert_array_equal(x, [[1.5, 2.0], [3.0, -7.5], [4.0, 5.0]])
    np.testing.assert_array_equal(y, [0, 1, 2])
    rc, _ = _convert(tmp_path, b'1,"8,5",0\n')  # a decimal comma, quoted: one field, not a float
    assert rc == 1 and "field 2: could not parse '8,5' as float" in capsys.readouterr().err
    rc, _ = _convert(tmp_path, text, "--record-defaults", "0,x,0")
    assert rc == 1 and "--record-defaults entry 2: 'x' is not float" in capsys.readouterr().err
