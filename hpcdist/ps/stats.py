"""What a ps task and a worker count: bytes, updates, dropped gradients, staleness, waits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ServerStats:
    """One ps task's cumulative figures (summary.json's `parameter_server.tasks`)."""

    task: int
    bytes_in: int = 0
    bytes_out: int = 0
    pushes: int = 0
    updates: int = 0
    dropped: int = 0
    dropped_samples: int = 0
    dropped_by_epoch: Counter = field(default_factory=Counter)
    dropped_warmup: int = 0  # of `dropped`: ps-async's warm-up (worker 0 alone)
    staleness: Counter = field(default_factory=Counter)  # staleness -> applied gradients
    max_lead: int = 0  # ps-async: the most steps a worker let go was ahead of the slowest
    busy_s: float = 0.0
    events: list | None = None  # (worker, version, step at arrival, applied) when recording

    def drop(self, samples: int, epoch: int, *, warmup: bool = False) -> None:
        self.dropped += 1
        self.dropped_warmup += int(warmup)
        self.dropped_samples += samples
        self.dropped_by_epoch[epoch] += 1

    def as_dict(self) -> dict:
        out = {
            "task": self.task,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "bytes_served": self.bytes_in + self.bytes_out,
            "pushes": self.pushes,
            "updates": self.updates,
            "dropped": self.dropped,
            "dropped_samples": self.dropped_samples,
            "dropped_by_epoch": {str(k + 1): v for k, v in sorted(self.dropped_by_epoch.items())},
            "dropped_warmup": self.dropped_warmup,
            "staleness_histogram": {str(k): v for k, v in sorted(self.staleness.items())},
            "max_lead": self.max_lead,
            "busy_s": self.busy_s,
        }
        if self.events is not None:
            out["events"] = list(self.events)
        return out


def combine(tasks: list[dict], worker_wait_s: list[float]) -> dict:
    """summary.json's `parameter_server` entry from every task's and worker's figures."""
    dropped = sum(t["dropped"] for t in tasks)
    hist: Counter = Counter()
    for t in tasks:
        hist.update({int(k): v for k, v in t["staleness_histogram"].items()})
    return {
        "tasks": [{k: v for k, v in t.items() if k != "events"} for t in tasks],
        "bytes_served": [t["bytes_served"] for t in tasks],
        "updates_applied": max((t["updates"] for t in tasks), default=0),
        "gradients_dropped": dropped,
        "dropped_in_warmup": sum(t.get("dropped_warmup", 0) for t in tasks),
        "samples_dropped": sum(t["dropped_samples"] for t in tasks),
        "staleness_histogram": {str(k): v for k, v in sorted(hist.items())},
        "worker_wait_s": worker_wait_s,
        "ps_busy_s": [t["busy_s"] for t in tasks],
    }


def closing_line(entry: dict) -> str:
    """One line for the end of a run: what the ps tasks did."""
    served = ", ".join(f"{b / 1e6:.1f}" for b in entry["bytes_served"])
    busy = ", ".join(f"{b:.2f}" for b in entry["ps_busy_s"])
    wait = max(entry["worker_wait_s"], default=0.0)
    warm = entry.get("dropped_in_warmup", 0)
    return (
        f"hpcdist: parameter servers: {entry['updates_applied']} updates, "
        f"{entry['gradients_dropped']} gradient shard(s) dropped "
        f"({entry['samples_dropped']} samples{f'; {warm} in the warm-up' if warm else ''}), "
        f"MB served per ps [{served}], ps busy s "
        f"[{busy}], longest worker wait {wait:.2f} s"
    )
