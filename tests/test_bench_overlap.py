"""`python -m hpcdist.bench overlap`: the per-repeat step times, their medians and the hidden
share it prints agree with each other, and its trace reader averages the right spans."""

import json
import math
import re
import statistics

import pytest
from figures import half_unit, value
from launch import run_mpi

from hpcdist.bench.overlap import step_times

#: A short run (7 timed steps) on a model big enough (1.2 MB of gradients) that the printed
#: ms, rounded to 0.01, pin the hidden share down: 256 records x 64 features per rank.
SMALL = ["--records-per-rank", "256", "--features", "64", "--hidden", "512,512", "--batch", "32"]
REPEAT = re.compile(
    r"^repeat (\d+) +(overlap|no overlap): backward ([\d.]+) ms, exchange ([\d.]+) ms "
    r"per step \((\d+) steps x (\d+) ranks\)$",
    re.M,
)
MEDIAN = re.compile(
    r"^median over repeats: with overlap backward\+exchange ([\d.]+) ms \(([\d.]+) \+ ([\d.]+)\)"
    r", without ([\d.]+) ms \(([\d.]+) \+ ([\d.]+)\)$",
    re.M,
)
HIDDEN = re.compile(r"^hidden share of the exchange: (-?\d+)%$", re.M)


def _assert_sum(total: str, a: str, b: str) -> None:
    """Printed total is a + b, all three rounded as printed."""
    slack = half_unit(total) + half_unit(a) + half_unit(b)
    assert abs(value(total) - value(a) - value(b)) <= slack + 1e-9, (total, a, b)


def _assert_hidden(hidden: str, total_on: str, total_off: str, ex_off: str) -> None:
    """Printed percentage is 100 (total_off - total_on) / ex_off, within the print rounding."""
    d = value(total_off) - value(total_on)
    hd = half_unit(total_off) + half_unit(total_on)
    e, he = value(ex_off), half_unit(ex_off)
    assert e - he > 0, ex_off
    ends = [100 * n / m for n in (d - hd, d + hd) for m in (e - he, e + he)]
    lo, hi = min(ends) - 0.5, max(ends) + 0.5  # the share is printed to a whole percent
    assert lo <= value(hidden) <= hi, f"{hidden}% is not 100 x {d} / {e} (within [{lo}, {hi}])"


@pytest.mark.launcher
@pytest.mark.parametrize("ranks, repeats", [(3, 3), (2, 1)], ids=["3ranks-x3", "2ranks-x1"])
def test_printed_step_times_medians_and_hidden_share_agree(ranks, repeats):
    """One line per (repeat, mode), alternating overlap / no overlap, at the world size asked
    for, with positive finite times and the same number of steps in both modes (at most the
    timed epoch's batches); each median is the median of the printed repeats; each
    backward+exchange total is the sum of its parts; hidden share = (total without - total
    with) / exchange without.

    Planted bug it catches: the hidden share's difference taken the wrong way round (with -
    without), or the medians taken as means. (Dividing by the exchange *with* overlap instead
    goes unseen when the two exchanges agree to the printed digits, as on 2 cores.)"""
    argv = ["-m", "hpcdist.bench", "overlap", "--ranks", str(ranks), "--repeats", str(repeats)]
    res = run_mpi(1, [*argv, *SMALL, "--epochs", "2", "--timeout", "100"], timeout=240)
    assert res.returncode == 0, res.output[-3000:]
    out = res.stdout
    rows = REPEAT.findall(out)
    want = [(str(r + 1), mode) for r in range(repeats) for mode in ("overlap", "no overlap")]
    assert [row[:2] for row in rows] == want, out
    steps = [int(row[4]) for row in rows]
    # epoch 2 only is timed: at most its batches (80% of 256 records train, 32 a batch), the
    # same with and without --overlap (each rank's trace is cut at its own first eval)
    assert 1 <= min(steps) and max(steps) <= math.ceil(256 / 32), rows
    assert len(set(steps)) == 1, rows
    assert {row[5] for row in rows} == {str(ranks)}
    for row in rows:
        assert value(row[2]) > 0 and value(row[3]) > 0, row
    (total_on, b_on, e_on, total_off, b_off, e_off), *more = MEDIAN.findall(out)
    assert not more
    for mode, backward, exchange in (("overlap", b_on, e_on), ("no overlap", b_off, e_off)):
        mine = [row for row in rows if row[1] == mode]
        # the median of an odd count of printed figures is one of them, printed alike
        assert backward == f"{statistics.median(float(r[2]) for r in mine):.2f}", mode
        assert exchange == f"{statistics.median(float(r[3]) for r in mine):.2f}", mode
    _assert_sum(total_on, b_on, e_on)
    _assert_sum(total_off, b_off, e_off)
    (hidden,) = HIDDEN.findall(out)
    _assert_hidden(hidden, total_on, total_off, e_off)


def _event(name, ts, dur, pid):
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "pid": pid}


def test_step_times_average_the_spans_after_the_first_eval(tmp_path):
    """Two ranks: epoch 1 (before the first eval) is left out, the later backward and exchange
    spans are averaged over every rank in ms, and steps counts per rank, not in all.

    Planted bug it catches: epoch 1 counted (ts >= 0 instead of after the first eval), the
    microseconds not turned into ms, or steps counted over all ranks together."""
    events = [{"ph": "M", "name": "process_name", "pid": 0}]
    for pid in (0, 1):
        events += [_event("backward", 10, 9000, pid), _event("exchange", 20, 9000, pid)]
        events.append(_event("eval", 100, 5, pid))  # the end of epoch 1
        events += [_event("backward", 200 + pid, 1000 * (pid + 1), pid)]  # 1, 2 ms
        events += [_event("backward", 300 + pid, 3000, pid)]  # 3 ms
        events += [_event("exchange", 250 + pid, 500 * (pid + 1), pid)]  # 0.5, 1 ms
        events += [_event("exchange", 350 + pid, 1500, pid), _event("forward", 400, 7e6, pid)]
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps({"traceEvents": events}))
    got = step_times(str(path))
    assert got["steps"] == 2
    assert got["backward"] == pytest.approx((1 + 3 + 2 + 3) / 4)
    assert got["exchange"] == pytest.approx((0.5 + 1.5 + 1 + 1.5) / 4)


def test_step_times_take_each_ranks_own_first_eval(tmp_path):
    """Rank 1 runs 150 us behind rank 0, so its last epoch-1 step starts after rank 0's first
    eval: that step is still epoch 1 and must not count.

    Planted bug it catches: the cut taken at the earliest eval of all ranks (the bug this
    test was a strict xfail for, fixed in step_times)."""
    events = []
    for pid, lag in ((0, 0), (1, 150)):
        events += [_event("backward", 10 + lag, 9000, pid), _event("exchange", 20 + lag, 9000, pid)]
        events.append(_event("eval", 100 + lag, 5, pid))
        events += [_event("backward", 300 + lag, 1000, pid)]
        events += [_event("exchange", 350 + lag, 1000, pid)]
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps({"traceEvents": events}))
    got = step_times(str(path))
    assert got["steps"] == 1
    assert got["backward"] == pytest.approx(1.0) and got["exchange"] == pytest.approx(1.0)
