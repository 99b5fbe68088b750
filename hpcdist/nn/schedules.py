"""Learning-rate schedules (constant, step, cosine, linear warm-up) and the linear scaling rule."""

from __future__ import annotations

import bisect
import math


class Schedule:
    """lr as a function of the global step (0-based): `opt.lr = schedule(step)`."""

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.lr_at(int(step))

    def lr_at(self, step: int) -> float:
        raise NotImplementedError

    def apply(self, optimizer, step: int) -> float:
        """Set optimizer.lr for `step` and return it."""
        optimizer.lr = self(step)
        return optimizer.lr


class ConstantLR(Schedule):
    """lr = base_lr."""

    def __init__(self, base_lr: float):
        self.base_lr = float(base_lr)

    def lr_at(self, step):
        return self.base_lr


class StepLR(Schedule):
    """base_lr * gamma**k after the k-th milestone step has been reached."""

    def __init__(self, base_lr: float, milestones, gamma: float = 0.1):
        self.base_lr, self.gamma = float(base_lr), float(gamma)
        self.milestones = sorted(int(m) for m in milestones)

    def lr_at(self, step):
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, step)


class CosineLR(Schedule):
    """Half a cosine from base_lr at step 0 to min_lr at total_steps (and after)."""

    def __init__(self, base_lr: float, total_steps: int, min_lr: float = 0.0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.base_lr, self.total_steps, self.min_lr = (
            float(base_lr),
            int(total_steps),
            float(min_lr),
        )

    def lr_at(self, step):
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


class LinearWarmup(Schedule):
    """Ramp linearly from start_lr at step 0 to schedule(warmup_steps), then follow `schedule`.

    The wrapped schedule keeps counting from step 0, so it is continuous at the join.
    """

    def __init__(self, schedule: Schedule, warmup_steps: int, start_lr: float = 0.0):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.schedule, self.warmup_steps, self.start_lr = (
            schedule,
            int(warmup_steps),
            float(start_lr),
        )

    def lr_at(self, step):
        if step >= self.warmup_steps:
            return self.schedule(step)
        target = self.schedule(self.warmup_steps)
        return self.start_lr + (target - self.start_lr) * step / self.warmup_steps


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int = 256) -> float:
    """The linear scaling rule (Goyal et al. 2017): base_lr * global_batch / reference_batch."""
    if global_batch < 1 or reference_batch < 1:
        raise ValueError(f"batch sizes must be >= 1, got {global_batch} and {reference_batch}")
    return float(base_lr) * global_batch / reference_batch


class LinearScalingLR(Schedule):
    """Goyal et al. 2017: the scaled lr, reached by a linear ramp from base_lr
    (or the scaled lr, if lower) over warmup_epochs.

    After warm-up, `decay` is "constant", "step" (times gamma at each epoch in
    milestones) or "cosine" (to 0 at total_epochs). Steps count globally from 0.
    """

    def __init__(
        self,
        base_lr: float,
        global_batch: int,
        steps_per_epoch: int,
        *,
        reference_batch: int = 256,
        warmup_epochs: float = 5.0,
        decay: str = "step",
        milestones=(30, 60, 80),
        gamma: float = 0.1,
        total_epochs: float | None = None,
    ):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        peak = scaled_lr(base_lr, global_batch, reference_batch)
        if decay == "constant":
            inner: Schedule = ConstantLR(peak)
        elif decay == "step":
            inner = StepLR(peak, [round(m * steps_per_epoch) for m in milestones], gamma)
        elif decay == "cosine":
            if total_epochs is None:
                raise ValueError("decay='cosine' needs total_epochs")
            inner = CosineLR(peak, round(total_epochs * steps_per_epoch))
        else:
            raise ValueError(f"decay must be 'constant', 'step' or 'cosine', got {decay!r}")
        self.peak_lr = peak
        self.steps_per_epoch = int(steps_per_epoch)
        warmup = round(warmup_epochs * steps_per_epoch)
        self._schedule = LinearWarmup(inner, warmup, start_lr=min(float(base_lr), peak))

    def lr_at(self, step):
        return self._schedule(step)
