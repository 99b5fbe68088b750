"""The reader benchmark runs end to end on tiny shards and reports raw and each path's rate."""

import pytest

from hpcdist.bench.reader import main


@pytest.mark.mpi
def test_reader_benchmark_smoke(comm, capsys):
    args = [
        "--shards",
        "2",
        "--records",
        "600",
        "--dim",
        "8",
        "--batch",
        "16",
        "--shuffle-buffer",
        "64",
        "--block",
        "128",
        "--repeat",
        "1",
        "--readers",
        "direct,ring",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    if comm.rank == 0:
        assert "raw" in out and "pipeline" in out and "ratio" in out
        assert "readers=direct (read path direct)" in out and "readers=ring" in out
