"""The six forms of the study as data: a name, a world size and the flags that make it.

Every form trains the same network on the same data with the same global
batch (`batch` samples per worker times `workers`), so the same learning rate
and the same steps per epoch; only how the work is spread differs:

    (a) allreduce sync       W ranks, gradients averaged by an allreduce
    (b) ps sync              1 ps + W workers, the ps averages all W gradients
    (c) ps sync + backup     1 ps + W workers, the ps applies the first W-1
    (d) ps async             1 ps + W workers, updates as they come, staleness bounded
    (e) tensor parallel      W ranks, each layer's units split over them (one replica)
    (f) pipeline parallel    W ranks, consecutive layers on consecutive ranks
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Form:
    """One way of training the network: `ranks` processes running hpcdist.train `flags`."""

    key: str
    name: str
    ranks: int
    flags: tuple[str, ...]
    workers: int  # the ranks that compute (a ps task only serves)
    note: str = ""

    def command(self, common: list[str]) -> list[str]:
        """The hpcdist.train arguments of this form: `common` (data, epochs, seed...) first."""
        return ["-m", "hpcdist.train", *common, *self.flags]


@dataclass(frozen=True)
class Plan:
    """What every form shares: workers, per-worker batch, ps staleness, pipeline micro-batches."""

    workers: int = 2
    batch: int = 16
    staleness: int = 2
    micro_batches: int = 4
    keys: tuple[str, ...] = field(default=("a", "b", "c", "d", "e", "f"))


def forms(plan: Plan | None = None) -> list[Form]:
    """The forms named in plan.keys, in that order."""
    plan = plan or Plan()
    w, b = plan.workers, plan.batch
    if w < 2:
        raise ValueError(f"the study needs at least 2 workers (one can be a backup), got {w}")
    if plan.micro_batches > w * b:
        raise ValueError(f"--micro-batches {plan.micro_batches} exceeds the global batch {w * b}")
    per = ("--batch-size", str(b))
    whole = ("--batch-size", str(w * b))  # one model-parallel replica takes the whole batch
    ps = ("--ps", "1", *per)
    tp = ("--model-parallel", "tensor", "--mp-size", str(w), *whole)
    table = {
        "a": Form("a", "allreduce sync", w, ("--exchange", "allreduce", *per), w),
        "b": Form("b", "ps sync", w + 1, ("--exchange", "ps-sync", *ps), w),
        "c": Form(
            "c",
            "ps sync, 1 backup worker",
            w + 1,
            ("--exchange", "ps-sync", *ps, "--replicas-to-aggregate", str(w - 1)),
            w,
            note=f"each update averages the first {w - 1} of {w} gradients",
        ),
        "d": Form(
            "d",
            f"ps async, staleness <= {plan.staleness}",
            w + 1,
            ("--exchange", "ps-async", *ps, "--staleness", str(plan.staleness)),
            w,
        ),
        "e": Form("e", "tensor parallel", w, tp, w),
        "f": Form(
            "f",
            "pipeline parallel",
            w,
            (
                "--model-parallel",
                "pipeline",
                "--mp-size",
                str(w),
                "--micro-batches",
                str(plan.micro_batches),
                *whole,
            ),
            w,
            note=f"{plan.micro_batches} micro-batches, 1F1B",
        ),
    }
    unknown = [k for k in plan.keys if k not in table]
    if unknown:
        raise ValueError(f"unknown study form(s) {unknown}; known: {sorted(table)}")
    return [table[k] for k in plan.keys]
