"""Readers: CSV defaults and bad-record policies, fixed-length binary, HDF5 and arrays."""

import h5py
import numpy as np
import pytest

from hpcdist.data.readers import (
    ArrayReader,
    CSVReader,
    FixedLengthRecordReader,
    HDF5Reader,
)
from hpcdist.errors import DataError

CSV = """x,y,label
1.5,2.0,1
,3.0,0
4.0,abc,1
5.0,6.0
7.0,8.0,
9.0,1.0,2
"""
# line 3: empty x (has a default: fine); 4: malformed number; 5: short line;
# 6: empty required label


def csv_file(tmp_path):
    path = tmp_path / "part-0.csv"
    path.write_text(CSV)
    return str(path)


def read(path, **kw):
    reader = CSVReader(path, [0.0, -1.0, int], skip_header_lines=1, **kw)
    return reader, [(k.record, rec) for k, rec in reader]


def test_csv_raise_names_file_and_line(tmp_path):
    path = csv_file(tmp_path)
    with pytest.raises(DataError, match=r"part-0\.csv:4: .*could not parse 'abc' as float"):
        read(path)


def test_csv_skip_counts_bad_records(tmp_path):
    reader, recs = read(csv_file(tmp_path), on_bad="skip")
    assert recs == [(2, (1.5, 2.0, 1)), (3, (0.0, 3.0, 0)), (7, (9.0, 1.0, 2))]
    assert reader.stats.skipped == 3 and reader.stats.records == 3


def test_csv_default_fills_what_has_a_default(tmp_path):
    reader, recs = read(csv_file(tmp_path), on_bad="default")
    # malformed y -> default -1.0; short line -> no label default -> skipped; empty label skipped
    assert recs == [(2, (1.5, 2.0, 1)), (3, (0.0, 3.0, 0)), (4, (4.0, -1.0, 1)), (7, (9.0, 1.0, 2))]
    assert reader.stats.defaulted == 1 and reader.stats.skipped == 2


def test_csv_quarantine_logs_file_record_and_reason(tmp_path):
    log = tmp_path / "bad.tsv"
    reader, recs = read(csv_file(tmp_path), on_bad="quarantine", quarantine_path=str(log))
    assert [r for r, _ in recs] == [2, 3, 7]
    lines = log.read_text().splitlines()
    assert [ln.split("\t")[1] for ln in lines] == ["4", "5", "6"]
    assert all(ln.split("\t")[0].endswith("part-0.csv") for ln in lines)
    assert "could not parse 'abc'" in lines[0] and "expected 3 fields, got 2" in lines[1]
    assert "field 3: empty" in lines[2]
    assert reader.stats.quarantined == 3


def test_csv_blocks_are_typed_columns(tmp_path):
    reader = CSVReader(csv_file(tmp_path), [0.0, -1.0, int], skip_header_lines=1, on_bad="skip")
    ((keys, (x, y, label)),) = list(reader.blocks(10, ["f4", "f4", "i8"]))
    np.testing.assert_array_equal(label, [1, 0, 2])
    assert x.dtype == np.float32 and [k.record for k in keys] == [2, 3, 7]


def test_fixed_length_records_and_truncated_tail(tmp_path):
    data = np.arange(30, dtype=np.int16).reshape(5, 6)
    path = tmp_path / "rec.bin"
    path.write_bytes(b"HEADER" + data.tobytes() + b"\x01\x02\x03")
    reader = FixedLengthRecordReader(
        str(path), record_bytes=12, header_bytes=6, dtype="i2", block=2, on_bad="skip"
    )
    recs = list(reader)
    np.testing.assert_array_equal(np.stack([r for _, r in recs]), data)
    assert [k.record for k, _ in recs] == [0, 1, 2, 3, 4] and reader.stats.skipped == 1
    strict = FixedLengthRecordReader(str(path), record_bytes=12, header_bytes=6, dtype="i2")
    with pytest.raises(DataError, match=r"rec\.bin:5: .*truncated record: 3 of 12"):
        list(strict)


def test_hdf5_and_array_readers_give_keys_and_rows(tmp_path):
    x = np.random.default_rng(0).random((10, 3)).astype(np.float32)
    y = np.arange(10)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["features"], f["labels"] = x, y
    recs = list(HDF5Reader([str(tmp_path / "a.h5")], block=4))
    assert [k.record for k, _ in recs] == list(range(10))
    np.testing.assert_array_equal(np.stack([r[0] for _, r in recs]), x)
    arr = list(ArrayReader(x, y, block=3))
    assert arr[9][1][1] == 9 and str(arr[9][0]) == "<memory>:9"


def test_not_hdf5_names_the_file(tmp_path):
    bad = tmp_path / "junk.h5"
    bad.write_bytes(b"this is not hdf5")
    with pytest.raises(DataError, match=r"junk\.h5: not a readable HDF5 file"):
        list(HDF5Reader([str(bad)]))


def test_fields_filled_from_defaults_are_counted(tmp_path):
    reader, recs = read(csv_file(tmp_path), on_bad="skip")
    assert (3, (0.0, 3.0, 0)) in recs  # line 3's empty x took its default
    assert reader.stats.filled == 1 and reader.stats.records == len(recs) == 3


def test_nonfinite_and_non_utf8_are_bad_unless_allowed(tmp_path):
    path = tmp_path / "n.csv"
    path.write_bytes(b"1.0,nan,1\n2.0,inf,0\n\xfe,1.0,1\n3.0,4.0,2\n")
    reader = CSVReader(str(path), [0.0, 0.0, int], on_bad="skip")
    assert [k.record for k, _ in reader] == [4] and reader.stats.skipped == 3
    with pytest.raises(DataError, match=r"n.csv:3: bad record: not UTF-8 text \(byte 0xfe"):
        list(CSVReader(str(path), [0.0, 0.0, int], on_bad="raise", allow_nonfinite=True))
    loose = CSVReader(str(path), [0.0, 0.0, int], on_bad="skip", allow_nonfinite=True)
    got = [rec for _, rec in loose]
    assert np.isnan(got[0][1]) and np.isinf(got[1][1]) and len(got) == 3


def test_quoted_field_holding_the_delimiter_is_one_field(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('"a,b",1\nplain,2\n')
    assert [rec for _, rec in CSVReader(str(path), [str, int])] == [("a,b", 1), ("plain", 2)]
