"""The reader benchmark on tiny shards: it counts every record it times, and its table's
rates, bandwidths and ratios agree with each other and with the shards' record size."""

import re
from types import SimpleNamespace

import pytest
from figures import assert_product, assert_quotient, value

from hpcdist.bench.reader import main, make_pipeline, make_shards, pipeline_read, raw_read
from hpcdist.data import HDF5Source
from hpcdist.guard import Guard

SHARDS, RECORDS, DIM, BATCH, REPEAT = 2, 600, 64, 16, 2
ARGS = dict(shards=SHARDS, records=RECORDS, dim=DIM, batch=BATCH, shuffle_buffer=64, block=128)
RATE = r"\s+([\d.]+) M/s\s+([\d.]+) GB/s"
ROW = re.compile(rf"^\s*(\d+){RATE}{RATE}\s+([\d.]+)\s+([\d.]+) s$")
BEST = re.compile(
    r"^best: raw ([\d.]+) M samples/s, pipeline \((\w+)\) ([\d.]+) M samples/s, "
    r"ratio ([\d.]+); first epoch ([\d.]+) s$"
)


@pytest.mark.mpi
def test_the_timed_reads_count_every_record(comm, mpi_tmp_path):
    """The counts the rates divide by: the raw read sees all 1200 records, an epoch of the
    pipeline (remainder="drop") n * (1200 // (n * 16)) * 16 of them, over all ranks."""
    directory = comm.bcast(str(mpi_tmp_path / "shards") if comm.rank == 0 else None)
    if comm.rank == 0:
        make_shards(directory, SHARDS, RECORDS, DIM, chunk_rows=64)
    comm.Barrier()
    source = HDF5Source(directory)
    guard = Guard(comm, name="test reader counts")
    args = SimpleNamespace(**ARGS, threads=1)
    pipe = make_pipeline(source, comm, args, "auto")
    try:
        seconds, n = raw_read(source, comm, block=128)
        assert n == SHARDS * RECORDS and seconds > 0
        for epoch in (0, 1):
            seconds, n, wait = pipeline_read(pipe, comm, guard, epoch)
            per_step = comm.size * BATCH
            assert n == SHARDS * RECORDS // per_step * per_step and seconds > 0 and wait >= 0
    finally:
        pipe.close()
        source.close()
        guard.free()


@pytest.mark.mpi
def test_reader_table_figures_agree(comm, capsys):
    """One section per read path asked for, one row per repeat; GB/s = M/s x 256 bytes a
    record; ratio = pipeline M/s / raw M/s; the best line is the rows' best and their ratio."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in ARGS.items()]
    assert main([*args, f"--repeat={REPEAT}", "--readers=direct,ring", "--threads=1"]) == 0
    out = capsys.readouterr().out
    if comm.rank != 0:
        assert out == ""
        return
    lines = out.splitlines()
    assert lines[0].startswith(
        f"reader benchmark: {comm.size} rank(s), {SHARDS} shards x {RECORDS} x {DIM} float32, "
        f"batch {BATCH}, shuffle buffer 64, 1 reader(s)/rank, blocks of 128 rows"
    )
    sections = [i for i, line in enumerate(lines) if line.startswith("readers=")]
    assert [lines[i].split()[0] for i in sections] == ["readers=direct", "readers=ring"]
    assert "(read path direct)" in lines[sections[0]]
    raws = []
    for i in sections:
        rows = [ROW.match(line) for line in lines[i + 2 : i + 2 + REPEAT]]
        assert all(rows), lines[i : i + 3 + REPEAT]
        assert [int(r[1]) for r in rows] == list(range(REPEAT))
        for r in rows:
            raw, raw_gb, pipe, pipe_gb, ratio, wait = r.groups()[1:]
            assert value(raw) > 0 and value(pipe) > 0 and value(wait) >= 0
            assert_product(raw_gb, raw, DIM * 4 / 1e3)  # M records/s x bytes -> GB/s
            assert_product(pipe_gb, pipe, DIM * 4 / 1e3)
            assert_quotient(ratio, pipe, raw)
        best = BEST.match(lines[i + 2 + REPEAT])
        assert best, lines[i + 2 + REPEAT]
        assert best[2] == lines[i].split("=")[1].split()[0]
        _assert_max(best[3], [r[4] for r in rows])
        assert_quotient(best[4], best[3], best[1])
        assert value(best[5]) >= 0  # a few ms on warm tiny shards: 0.000 is a true reading
        raws += [r[2] for r in rows]
    _assert_max(best[1], raws)  # the raw reads are shared by both sections


def _assert_max(printed: str, rates: list[str]) -> None:
    """`printed` (3 decimals) is the largest of rates (3 decimals), both rounded alike."""
    assert value(printed) == max(value(r) for r in rates), (printed, rates)
