"""The study's report against hand-made runs: the fastest form, ties, shortfalls, failures."""

import math

import pytest

from hpcdist.study import Run, conclusion, ranking, summarize, table, write


def run(form, seed=0, *, curve=(), name=None, error="", rate=1000.0, wire=100.0):
    """A Run by hand: curve = [(step, seconds so far, accuracy)] at each epoch end."""
    epochs = [[i + 1, s, t, a] for i, (s, t, a) in enumerate(curve)]
    return Run(
        form,
        name or f"form {form}",
        seed,
        f"mpiexec -n 2 python -m hpcdist.train --seed {seed}",
        error=error,
        epochs=epochs if not error else [],
        final_accuracy=epochs[-1][3] if epochs and not error else math.nan,
        steps=epochs[-1][1] if epochs else 0,
        samples_per_s=rate,
        bytes_per_step=wire,
    )


SLOW = [(50, 2.0, 0.90), (100, 4.0, 0.96)]  # reaches 0.95 at step 100, 4 s (40 ms / step)
FAST = [(50, 1.0, 0.93), (100, 2.0, 0.97)]  # at step 100, 2 s (20 ms / step)
EARLY = [(50, 1.5, 0.955), (100, 3.0, 0.97)]  # at step 50, 1.5 s (30 ms / step)
NEVER = [(50, 0.5, 0.80), (100, 1.0, 0.90)]


def test_the_fastest_form_is_named_with_the_cause_of_its_lead():
    rows = summarize([run("a", curve=SLOW), run("b", curve=FAST), run("c", curve=NEVER)], 0.95)
    winners, rest = ranking(rows)
    assert [r.key for r in winners] == ["b"] and [r.key for r in rest] == ["a"]
    text = conclusion(rows, 0.95)
    assert text.startswith("(b) form b reached validation accuracy 0.95 fastest here: 2.00 s")
    # same steps (100 vs 100), half the time per step: the lead is in the steps' speed
    assert "100 steps to the target against 100 (1.00x)" in text
    assert "20.00 ms per step against 40.00 ms (2.00x)" in text
    assert "mainly from faster steps" in text
    assert "(c) form c never reached it (final accuracy 0.9000)" in text
    assert "The slowest form to get there, (a) form a, took 4.00 s (2.00x)" in text


def test_a_lead_from_fewer_steps_says_so():
    rows = summarize([run("a", curve=FAST), run("e", curve=EARLY)], 0.95)
    text = conclusion(rows, 0.95)
    assert text.startswith("(e) form e reached validation accuracy 0.95 fastest here: 1.50 s")
    assert "50 steps to the target against 100 (2.00x)" in text
    assert "30.00 ms per step against 20.00 ms (0.67x)" in text
    assert "mainly from fewer steps" in text


def test_times_within_the_tie_margin_tie():
    close = [(50, 1.0, 0.93), (100, 2.06, 0.97)]  # 3% slower than FAST
    rows = summarize([run("a", curve=close), run("b", curve=FAST), run("c", curve=SLOW)], 0.95)
    winners, rest = ranking(rows, tie=0.05)
    assert [r.key for r in winners] == ["b", "a"] and [r.key for r in rest] == ["c"]
    text = conclusion(rows, 0.95, tie=0.05)
    assert text.startswith("(b) form b and (a) form a tie as the fastest")
    assert "(2.00 s, 2.06 s; within 5% of each other" in text
    # with a tighter margin there is one winner
    assert conclusion(rows, 0.95, tie=0.01).startswith("(b) form b reached")


def test_no_form_reaching_the_target_is_said_plainly():
    rows = summarize([run("a", curve=NEVER), run("b", curve=SLOW)], 0.99)
    assert ranking(rows) == ([], [])
    text = conclusion(rows, 0.99)
    assert text.startswith("No form reached validation accuracy 0.99 in every seed here.")
    assert "The highest final accuracy was (b) form b's 0.9600." in text
    assert "not reached" in table(rows, 0.99)


def test_seeds_give_a_mean_and_spread_and_a_partial_form_is_not_a_winner():
    runs = [
        run("a", 0, curve=FAST),
        run("a", 1, curve=[(50, 1.0, 0.93), (100, 2.4, 0.97)]),
        run("b", 0, curve=[(50, 0.2, 0.96)]),  # fastest seed of all, but its other seed never
        run("b", 1, curve=NEVER),
    ]
    rows = summarize(runs, 0.95)
    md = table(rows, 0.95)
    a_line = next(ln for ln in md.splitlines() if ln.startswith("| (a)"))
    assert "| 2/2 | 2.20 ± 0.28 | 100 ± 0 |" in a_line  # std of (2.0, 2.4), ddof 1
    assert "(reached in 1/2 seeds)" in md
    assert [r.key for r in ranking(rows)[0]] == ["a"]
    assert "(b) form b reached it in 1 of 2 seeds" in conclusion(rows, 0.95)


def test_a_failed_form_keeps_its_row_with_the_error_line():
    error = "exit 1: ValueError: --ps needs at least one worker"
    rows = summarize([run("a", curve=FAST), run("b", error=error)], 0.95)
    md = table(rows, 0.95)
    assert f"| (b) form b | 0/1 | failed: {error} |" in md
    text = conclusion(rows, 0.95)
    assert text.startswith("(a) form a reached")
    assert f"(b) form b failed in 1 of 1 runs: {error}" in text


def test_write_puts_the_table_conclusion_and_plots_in_the_directory(tmp_path):
    runs = [run("a", curve=FAST, name="allreduce sync"), run("b", curve=SLOW, name="ps sync")]
    path = write(runs, target=0.95, directory=tmp_path, header="\n- machine: test\n")
    text = path.read_text()
    assert "| (a) allreduce sync | 1/1 | 2.00 | 100 | 0.9700 | 1,000 | 100 |" in text
    assert conclusion(summarize(runs, 0.95), 0.95) in text
    for name in ("accuracy_vs_time.png", "accuracy_vs_steps.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text


@pytest.mark.parametrize("target", [0.5, 0.97])
def test_time_to_is_the_first_evaluation_at_or_above_the_target(target):
    r = run("a", curve=FAST)
    assert r.time_to(target) == ((1.0, 50) if target == 0.5 else (2.0, 100))
    assert r.time_to(0.98) is None


def test_a_gap_inside_the_seeds_spread_is_called_unsettled():
    def two(form, t0, t1):
        return [
            run(form, seed, curve=[(50, t / 2, 0.93), (100, t, 0.97)])
            for seed, t in enumerate((t0, t1))
        ]

    noisy = summarize(two("a", 1.0, 1.6) + two("b", 1.5, 1.5), 0.95)  # 1.3 ± 0.42 vs 1.5 ± 0
    text = conclusion(noisy, 0.95)
    assert text.startswith("(a) form a reached")
    assert "The gap (0.20 s) is smaller than the spread over seeds" in text
    assert "up to 0.42 s" in text
    clear = summarize(two("a", 1.0, 1.1) + two("b", 1.5, 1.6), 0.95)
    assert "do not settle" not in conclusion(clear, 0.95)
