"""`python -m hpcdist.bench ps`: the shard-balance table agrees with the model's tensor list,
and the exchange and straggler figures agree with each other and with the set-up they name."""

import re

import pytest
from figures import assert_quotient, value
from launch import run_mpi

from hpcdist.bench.ps import SLOW_FACTOR, STEP_S
from hpcdist.bench.workloads import WORKLOADS

pytestmark = pytest.mark.launcher

BALANCE = re.compile(r"^ +(\d) +([\d.]+) +([\d.]+)$", re.M)
EXCHANGE = re.compile(
    r"^\(b\) (\d+) ranks, (\d+) MB list: AllreduceExchange over (\d+) ranks ([\d.]+) ms/step; "
    r"ps-sync (\d+) ps \+ (\d+) workers push\+pull ([\d.]+) ms/step \(([\d.]+)x\)$",
    re.M,
)
TRANSPORT = re.compile(r"^\(d\) transport, 1 ps \+ (\d+) workers, (\d+) MB per worker:$", re.M)
DESIGN = re.compile(
    r"^    (two-sided Mprobe/Mrecv|one-sided Accumulate/Get) +([\d.]+) ms/step "
    r"\(([\d.]+)x two-sided, ([\d.]+)x allreduce\)$",
    re.M,
)
BASELINE = re.compile(r"^    AllreduceExchange, list +([\d.]+) ms/step \((\d+) ranks\)$", re.M)
STRAGGLER = re.compile(r"^(plain sync|sync, 1 backup|async) +([\d.]+) +([\d.]+) +([\d.]+)$", re.M)


def _imbalance(loads: list[int]) -> float:
    return max(loads) / (sum(loads) / len(loads))


@pytest.fixture(scope="module")
def out():
    """One `ps` run, all four parts (it starts 3-, 4-, 4-, 5-, 3- and 4-rank jobs itself)."""
    res = run_mpi(1, ["-m", "hpcdist.bench", "ps", "--steps", "3"], timeout=240)
    assert res.returncode == 0, res.output[-3000:]
    return res.stdout


def test_balance_table_agrees_with_the_tensor_list(out):
    """One row per 2, 3, 4 ps; 1 <= busiest/mean <= ps count; greedy no worse than
    round-robin; round-robin's figure is the one of tensor i on ps i mod P, worked out here
    from the ResNet-50-like list; greedy (largest piece first onto the least loaded) is
    within one largest tensor of the mean.

    Planted bug it catches: the columns swapped, round-robin placed by another rule, or an
    imbalance computed over the busiest / the least loaded ps instead of the mean."""
    sizes = WORKLOADS["resnet50"]()
    rows = BALANCE.findall(out)
    assert [r[0] for r in rows] == ["2", "3", "4"], out
    for nps, greedy, rr in rows:
        nps, g, r = int(nps), value(greedy), value(rr)
        assert 1.0 <= g <= r <= nps, (nps, greedy, rr)
        loads = [0] * nps
        for i, n in enumerate(sizes):
            loads[i % nps] += 4 * n
        assert abs(r - _imbalance(loads)) <= 0.5e-4 + 1e-9, (nps, rr, _imbalance(loads))
        assert g <= 1 + max(sizes) * nps / sum(sizes) + 0.5e-4, (nps, greedy)


def test_exchange_lines_agree_with_their_set_up_and_ratio(out):
    """(b) at 3 ranks (1 ps), 4 ranks (1 ps) and 4 ranks (2 ps): the allreduce over all the
    ranks, n - P workers, the list's size the ResNet-50-like floats x 4 bytes, positive
    times, and the printed ratio ps-sync / allreduce of the printed times.

    Planted bug it catches: the ratio inverted, a wrong worker count, or a spawned exchange
    job that failed (ps --part all still exits 0 then: it returns only the last job's status)."""
    mb = round(sum(WORKLOADS["resnet50"]()) * 4 / 1e6)
    lines = EXCHANGE.findall(out)
    assert [(int(n), int(p)) for n, _, _, _, p, _, _, _ in lines] == [(3, 1), (4, 1), (4, 2)], out
    for n, list_mb, ar_n, ar_ms, nps, workers, ps_ms, ratio in lines:
        assert int(list_mb) == mb and ar_n == n and int(workers) == int(n) - int(nps)
        assert value(ar_ms) > 0 and value(ps_ms) > 0
        assert_quotient(ratio, ps_ms, ar_ms)


def test_straggler_table_ratios_and_rates(out):
    """(c) one row per mode; ratio = slowed / unslowed steps/s as printed; no rate above
    1 / the 20 ms 'compute' of a step; plain sync waits for the slowed worker each step
    (ratio well below 1), the backup and async modes lose less to it.

    Planted bug it catches: the ratio inverted (unslowed / slowed), the rates taken from the
    fastest worker's time, or the slowed worker left in plain sync's aggregate missing."""
    assert f"{STEP_S * 1e3:.0f} ms steps, worker 1 slowed {SLOW_FACTOR}x" in out
    rows = {mode: (base, slowed, ratio) for mode, base, slowed, ratio in STRAGGLER.findall(out)}
    assert list(rows) == ["plain sync", "sync, 1 backup", "async"], out
    for base, slowed, ratio in rows.values():
        assert 0 < value(slowed) and 0 < value(base) <= 1 / STEP_S + 0.05, (base, slowed)
        assert_quotient(ratio, slowed, base)
    plain = value(rows["plain sync"][2])
    assert plain <= 0.6, rows  # about 1 / SLOW_FACTOR: each step waits for the slow worker
    assert value(rows["sync, 1 backup"][2]) > plain and value(rows["async"][2]) > plain, rows


def test_transport_lines_compare_both_designs_against_the_allreduce(out):
    """(d) at 3 and 4 ranks: n - 1 workers, each sending the whole list (its MB), both
    designs' times positive, each ratio the quotient of the printed times, the baseline over
    all n ranks, and every worker's sum checked (the bench exits 1 on a wrong one, which the
    fixture's exit status catches).

    Planted bugs it catches: a worker's gradient left out of the one-sided sum (the check
    prints WRONG, exit 1), the ratios inverted, the baseline timed on fewer ranks."""
    mb = round(sum(WORKLOADS["resnet50"]()) * 4 / 1e6)
    heads = TRANSPORT.findall(out)
    assert [(int(w), int(m)) for w, m in heads] == [(2, mb), (3, mb)], out
    designs, baselines = DESIGN.findall(out), BASELINE.findall(out)
    assert [d[0] for d in designs] == ["two-sided Mprobe/Mrecv", "one-sided Accumulate/Get"] * 2
    assert [int(n) for _, n in baselines] == [3, 4], out
    pairs = list(zip(designs[::2], designs[1::2], strict=True))
    for pair, (ar_ms, _) in zip(pairs, baselines, strict=True):
        two_ms = pair[0][1]
        for _, ms, vs_two, vs_ar in pair:
            assert value(ms) > 0
            assert_quotient(vs_two, ms, two_ms)
            assert_quotient(vs_ar, ms, ar_ms)
    assert out.count("sums checked on every worker: ok") == 2, out
