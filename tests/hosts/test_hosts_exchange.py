"""The hierarchical exchange and compression across 2 hosts x 2 ranks of the namespace bed."""

import os
import re
import subprocess

import pytest

from hpcdist.bench.hostbed import BedUnavailable, HostBed

pytestmark = pytest.mark.hosts

JOB = "tests/hosts/hosts_job.py"


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_bed_comes_up_and_is_torn_down_even_after_an_error():
    with pytest.raises(ValueError, match="--link: expected a rate like 5gbit"):
        HostBed(2, "fast")
    bed = HostBed(2, "100mbit", name="hpcdtear")
    try:
        bed.check()
    except BedUnavailable as exc:
        if os.environ.get("HPCDIST_HOSTS_REQUIRED"):
            pytest.fail(f"HPCDIST_HOSTS_REQUIRED is set but no host bed: {exc}")
        pytest.skip(f"no host bed here: {exc}")
    with pytest.raises(RuntimeError, match="inside"), bed:
        assert "hpcdtear-h0" in _namespaces() and "hpcdtear-h1" in _namespaces()
        raise RuntimeError("inside the bed")
    assert "hpcdtear" not in _namespaces()


def test_exchange_across_two_hosts_matches_float64(bed):
    """none/bf16/fp16, 16-bit between nodes only and forced everywhere, exchange and flat API:
    within the bounds of the float64 reference; and the bytes really crossed the links."""
    before = bed.link_bytes(1)
    res = bed.run(2, [JOB, "exchange"], timeout=240)
    assert res.returncode == 0, res.output[-4000:]
    for r in range(4):
        assert f"rank {r}: OK nodes=2 local=2" in res.stdout, res.output[-4000:]
    # the measured choice: 5 Gbit/s (0.625 GB/s) links are far below memory speed. The probe
    # is a few ms of TCP through tbf on a loaded machine: it has read 0.29-0.54 GB/s here and
    # in CI, so the bounds only say "the links, not shared memory (tens of GB/s), not zero".
    topo = re.findall(r"rank \d: TOPOLOGY (\w+) ([\d.]+)", res.stdout)
    assert len(topo) == 4 and len(set(topo)) == 1, res.stdout
    assert topo[0][0] == "hierarchical" and 0.1 < float(topo[0][1]) < 0.8, topo
    cross = int(re.search(r"CROSS (\d+)", res.stdout).group(1))
    sent = bed.link_bytes(1) - before
    assert cross > 0 and sent >= cross, (sent, cross)


@pytest.mark.parametrize(
    "path",
    ["tests/exchange/test_exchange_paths.py", "tests/ps/test_ps_sync.py"],
    ids=["exchange-paths", "ps-sync"],
)
def test_suites_pass_on_two_real_nodes(bed, path):
    """The in-process suites at 2 hosts x 2 ranks: every path on real nodes (and pretend
    ones inside them), and the sync parameter server against its float64 replay."""
    args = ["-m", "pytest", "--only-mpi", "-q", "-p", "no:cacheprovider", path]
    res = bed.run(2, args, timeout=400)
    assert res.returncode == 0, res.output[-4000:]
    assert re.search(r"\d+ passed", res.stdout) and "failed" not in res.stdout, res.stdout[-2000:]
