"""python -m hpcdist.bench casts: every row timed, the C results checked against numpy's."""

import pytest

from hpcdist.bench import casts as bench_casts

pytest.importorskip("hpcdist._casts", reason="built without a C compiler")


def test_the_casts_benchmark_prints_its_table(capsys):
    assert bench_casts.main(["--elements", "20001", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    casts = {(r[0].strip(), r[1].strip()) for r in rows[1:]}  # after the header row
    assert {
        ("encode", "bf16"),
        ("decode-add", "fp16"),
        ("scale (largest magnitude)", "fp16"),
    } <= casts
    for r in rows[1:-1]:
        assert float(r[2]) > 0 and float(r[3]) > 0  # C and numpy both timed
    assert "fp16 x bf16, encode (C):" in out


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        bench_casts.main(["--repeat", "0"])
