"""Learning-rate schedules and the linear scaling rule against hand-computed values."""

import math

import numpy as np
import pytest

from hpcdist import nn


def test_constant_step_and_cosine():
    assert [nn.ConstantLR(0.3)(s) for s in (0, 5, 10**6)] == [0.3, 0.3, 0.3]
    step = nn.StepLR(1.0, milestones=[10, 5], gamma=0.5)
    assert [step(s) for s in (0, 4, 5, 9, 10, 100)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    cos = nn.CosineLR(2.0, total_steps=4, min_lr=0.5)
    # 0.5 + 1.5 * (1 + cos(pi * t / 4)) / 2 for t = 0..4, then flat
    expected = [
        2.0,
        0.5 + 0.75 * (1 + math.sqrt(0.5)),
        1.25,
        0.5 + 0.75 * (1 - math.sqrt(0.5)),
        0.5,
    ]
    assert [cos(s) for s in range(5)] == pytest.approx(expected, rel=1e-12)
    assert cos(9) == pytest.approx(0.5)


def test_linear_warmup_composes_with_any_schedule():
    warm = nn.LinearWarmup(nn.StepLR(1.0, [6], gamma=0.1), warmup_steps=4, start_lr=0.2)
    got = [warm(s) for s in range(8)]
    assert got == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.1, 0.1], rel=1e-12)
    cos = nn.LinearWarmup(nn.CosineLR(1.0, 10), warmup_steps=2)
    join = 0.5 * (1 + math.cos(math.pi * 0.2))
    assert [cos(0), cos(1), cos(2)] == pytest.approx([0.0, join / 2, join], rel=1e-12)
    assert nn.LinearWarmup(nn.ConstantLR(0.7), 0)(0) == 0.7


def test_scaled_lr_and_goyal_schedule():
    assert nn.scaled_lr(0.1, 8192) == pytest.approx(3.2)
    assert nn.scaled_lr(0.1, 512, reference_batch=128) == pytest.approx(0.4)
    # 0.1 at batch 256 -> 0.4 at batch 1024; 10 steps/epoch; warm-up over 2 epochs
    s = nn.LinearScalingLR(0.1, 1024, steps_per_epoch=10, warmup_epochs=2, milestones=(3, 5))
    assert s.peak_lr == pytest.approx(0.4)
    assert (
        s(0) == pytest.approx(0.1) and s(10) == pytest.approx(0.25) and s(20) == pytest.approx(0.4)
    )
    assert (
        s(29) == pytest.approx(0.4)
        and s(30) == pytest.approx(0.04)
        and s(50) == pytest.approx(0.004)
    )
    c = nn.LinearScalingLR(0.1, 512, 5, warmup_epochs=1, decay="cosine", total_epochs=3)
    assert c(5) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi / 3)))
    assert c(15) == pytest.approx(0.0, abs=1e-15)


def test_schedule_drives_optimizer_lr():
    param = nn.Parameter("w", np.zeros(2, np.float32))
    opt = nn.SGD([param], 0.0)
    sched = nn.StepLR(0.5, [1])
    assert sched.apply(opt, 0) == 0.5 and opt.lr == 0.5
    sched.apply(opt, 1)
    assert opt.lr == pytest.approx(0.05)


def test_bad_arguments():
    with pytest.raises(ValueError, match="step"):
        nn.ConstantLR(1.0)(-1)
    with pytest.raises(ValueError, match="total_epochs"):
        nn.LinearScalingLR(0.1, 256, 10, decay="cosine")
    with pytest.raises(ValueError, match="decay"):
        nn.LinearScalingLR(0.1, 256, 10, decay="poly")
    with pytest.raises(ValueError, match="batch"):
        nn.scaled_lr(0.1, 0)
