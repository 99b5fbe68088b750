"""Schedule tables: deadlock-free under synchronous sends, dependencies kept, bubble and memory."""

import pytest

from hpcdist.parallel import (
    SCHEDULES,
    Action,
    Op,
    ScheduleError,
    bubble,
    build_schedule,
    check,
    peak_activations,
    play,
)

SIZES = [(k, m) for k in range(1, 6) for m in range(1, 9)]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize(("stages", "micro"), SIZES)
def test_every_table_plays_to_the_end_with_the_gpipe_bubble(name, stages, micro):
    table = build_schedule(name, stages, micro)  # checks dependencies and deadlocks
    assert len(table) == stages
    for row in table:
        for kind in ("forward", "backward"):
            assert sorted(a.micro for a in row if a.kind == kind) == list(range(micro))
    # unit costs: both schedules idle (K-1)/(M+K-1) of the stage time (GPipe's formula)
    assert bubble(table) == pytest.approx((stages - 1) / (micro + stages - 1), abs=1e-12)


@pytest.mark.parametrize(("stages", "micro"), [(4, 8), (4, 2), (3, 3), (5, 1)])
def test_1f1b_holds_fewer_activations_than_gpipe(stages, micro):
    assert peak_activations(build_schedule("gpipe", stages, micro)) == [micro] * stages
    one = peak_activations(build_schedule("1f1b", stages, micro))
    assert one == [min(micro, stages - s) for s in range(stages)]


def test_1f1b_warms_up_with_k_minus_1_minus_s_forwards():
    for s, row in enumerate(build_schedule("1f1b", 4, 6)):
        compute = [a.kind for a in row if a.kind != "comm"]
        first_backward = compute.index("backward")
        assert first_backward == min(6, 4 - s)  # warm-up forwards plus the first steady one
        assert compute[first_backward : first_backward + 2] in (
            ["backward", "forward"],
            ["backward", "backward"],
        )


def test_a_longer_backward_is_reflected_in_the_played_times():
    table = build_schedule("gpipe", 2, 4)
    ends = play(table, forward_cost=1.0, backward_cost=2.0)
    # critical path: 4 forwards on stage 0 + 1 on stage 1, then 4 backwards on each side
    # of the last stage overlapping: (M + K - 1) * (f + b) = 5 * 3
    assert max(ends) == pytest.approx(15.0)


def _naive_1f1b_two_stages():
    """Blocking sends in the textbook order: stage 0 sends act 1 while stage 1 sends grad 0."""

    def comm(*ops):
        return Action("comm", ops=ops)

    s0 = (
        Action("forward", 0),
        comm(Op("send", "act", 0, 1)),
        Action("forward", 1),
        comm(Op("send", "act", 1, 1)),
        comm(Op("recv", "grad", 0, 1)),
        Action("backward", 0),
        comm(Op("recv", "grad", 1, 1)),
        Action("backward", 1),
    )
    s1 = (
        comm(Op("recv", "act", 0, 0)),
        Action("forward", 0),
        Action("backward", 0),
        comm(Op("send", "grad", 0, 0)),
        comm(Op("recv", "act", 1, 0)),
        Action("forward", 1),
        Action("backward", 1),
        comm(Op("send", "grad", 1, 0)),
    )
    return (s0, s1)


def test_crossing_sends_are_found_and_named_before_anything_runs():
    table = _naive_1f1b_two_stages()
    with pytest.raises(ScheduleError, match="deadlocks") as info:
        check(table)
    text = str(info.value)
    assert "stage 0 at action 3 ({send act of micro-batch 1 to stage 1})" in text
    assert "stage 1 at action 3 ({send grad of micro-batch 0 to stage 0})" in text


def test_the_same_transfers_grouped_do_not_deadlock():
    s0, s1 = _naive_1f1b_two_stages()
    both = Action("comm", ops=(Op("send", "act", 1, 1), Op("recv", "grad", 0, 1)))
    s0 = s0[:3] + (both,) + s0[5:]
    s1b = Action("comm", ops=(Op("send", "grad", 0, 0), Op("recv", "act", 1, 0)))
    s1 = s1[:3] + (s1b,) + s1[5:]
    check((s0, s1))


def test_broken_dependencies_are_refused():
    ok = build_schedule("gpipe", 2, 2)
    no_recv = (ok[0], tuple(a for a in ok[1] if a.kind != "comm" or a.ops[0].what != "act"))
    with pytest.raises(ScheduleError, match="stage 1, action 0 .*input is not received"):
        check(no_recv)
    twice = (ok[0] + (Action("forward", 0),), ok[1])
    with pytest.raises(ScheduleError, match=r"stage 0 runs forward of micro-batches \[0, 0, 1\]"):
        check(twice)
    early = ((Action("backward", 0), Action("forward", 0)),)
    with pytest.raises(ScheduleError, match="its forward did not run"):
        check(early)
    lone = (
        (
            Action("forward", 0),
            Action("comm", ops=(Op("send", "act", 0, 1),)),
            Action("backward", 0),
        ),
    )
    with pytest.raises(ScheduleError, match="names no other stage"):
        check(lone)


def test_bad_sizes_and_names_are_named():
    with pytest.raises(ValueError, match="micro_batches >= 1, got 0"):
        build_schedule("gpipe", 2, 0)
    with pytest.raises(ValueError, match="stages >= 1"):
        build_schedule("1f1b", 0, 4)
    with pytest.raises(ValueError, match=r"one of \['1f1b', 'gpipe'\], got 'zb'"):
        build_schedule("zb", 2, 2)
