"""The TF1 file pipeline pieces: filename_queue, LineReader fed by it, decode_csv."""

import pytest

from hpcdist.data import LineReader, ReadStats, decode_csv, filename_queue
from hpcdist.errors import DataError, OutOfRangeError


def test_filename_queue_holds_whole_names_for_each_epoch():
    names = ["data/part-000.csv", "data/part-001.csv", "data/part-002.csv"]
    q = filename_queue(names, num_epochs=2)
    assert q.is_closed and q.dequeue_many(6).tolist() == names * 2
    shuffled = filename_queue(names, num_epochs=3, shuffle=True, seed=1).dequeue_many(9).tolist()
    assert [sorted(shuffled[i : i + 3]) for i in (0, 3, 6)] == [names] * 3  # each epoch whole
    assert shuffled != names * 3
    with pytest.raises(ValueError, match="num_epochs >= 1"):
        filename_queue(names, num_epochs=0)


def test_line_reader_goes_through_every_file_then_out_of_range(tmp_path):
    (tmp_path / "a.csv").write_text("h1,h2\n1,2\n\n3,4\n")
    (tmp_path / "b.csv").write_text("h1,h2\n5,6\n")
    q = filename_queue([tmp_path / "a.csv", tmp_path / "b.csv"])
    reader = LineReader(skip_header_lines=1)
    got = [reader.read(q) for _ in range(3)]
    assert got == [
        (f"{tmp_path / 'a.csv'}:2", "1,2"),
        (f"{tmp_path / 'a.csv'}:4", "3,4"),
        (f"{tmp_path / 'b.csv'}:2", "5,6"),
    ]
    with pytest.raises(OutOfRangeError):
        reader.read(q)


def test_line_reader_names_a_missing_file_and_a_non_utf8_line(tmp_path):
    with pytest.raises(DataError, match="nope.csv: cannot open"):
        LineReader().read(filename_queue([tmp_path / "nope.csv"]))
    (tmp_path / "bad.csv").write_bytes(b"1,2\n\xff,3\n")
    reader, q = LineReader(), filename_queue([tmp_path / "bad.csv"])
    assert reader.read(q)[1] == "1,2"
    with pytest.raises(DataError, match=r"bad.csv:2: bad record: not UTF-8"):
        reader.read(q)


def test_decode_csv_fills_defaults_and_counts_them():
    stats = ReadStats()
    defaults = [[-1.0], [-1.0], [-1]]
    assert decode_csv("1., 2., 0", defaults, stats=stats) == (1.0, 2.0, 0)
    assert decode_csv("7.,   , 0", defaults, stats=stats) == (7.0, -1.0, 0)  # the seed's line
    assert stats.filled == 1 and stats.records == 2
    with pytest.raises(DataError, match=r"my.csv:4: bad record: field 3: could not parse 'x'"):
        decode_csv("1,2,x", defaults, key="my.csv:4")
    with pytest.raises(DataError, match="field 1: empty"):
        decode_csv(",2,3", [float, 0.0, 0])  # a type: a required column
