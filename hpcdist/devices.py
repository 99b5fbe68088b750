"""Device strings, pinning each rank to a GPU or the CPU, memory and thread limits."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import backend, runtime
from .errors import DevicePlacementError

_DEVICE_RE = re.compile(
    r"^(?:/job:(?P<job>[a-z_]+))?(?:/task:(?P<task>\d+))?"
    r"(?:/?(?:device:)?(?P<type>cpu|gpu):(?P<index>\d+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string such as `/job:worker/task:1/gpu:0` or `/cpu:0`."""

    device_type: str | None = None  # "cpu", "gpu", or None (unspecified)
    index: int = 0
    job: str | None = None
    task: int | None = None

    @classmethod
    def parse(cls, text: str) -> DeviceSpec:
        m = _DEVICE_RE.match(text.strip())
        if not text.strip() or not m:
            raise ValueError(
                f"cannot parse device string {text!r}; expected forms like "
                "'/job:worker/task:1/gpu:0', '/cpu:0' or 'gpu:1'"
            )
        kind = m["type"].lower() if m["type"] else None
        return cls(
            device_type=kind,
            index=int(m["index"]) if m["index"] else 0,
            job=m["job"],
            task=int(m["task"]) if m["task"] is not None else None,
        )

    def __str__(self) -> str:
        parts = []
        if self.job is not None:
            parts.append(f"/job:{self.job}")
        if self.task is not None:
            parts.append(f"/task:{self.task}")
        if self.device_type is not None:
            parts.append(f"/{self.device_type}:{self.index}")
        return "".join(parts) or "/"


def visible_gpus() -> int:
    """How many CUDA devices this process may use (honours CUDA_VISIBLE_DEVICES)."""
    cp = backend.cupy_or_none()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


@dataclass(frozen=True)
class Placement:
    """Where this rank computes: its device, array module and limits."""

    device: DeviceSpec
    xp: object  # numpy or cupy
    threads: int
    gpu_memory_limit: int | None = None  # bytes, None when unlimited or CPU

    @property
    def is_gpu(self) -> bool:
        return self.device.device_type == "gpu"


PlacementFn = Callable[[runtime.RankInfo, object], str]


def pin_device(
    device: str | DeviceSpec | PlacementFn = "auto",
    *,
    task=None,
    strict: bool = False,
    memory_fraction: float | None = None,
    threads: int | None = None,
) -> Placement:
    """Pin this rank to a device and return the Placement.

    `device` is "auto" (GPU local_rank % n_visible when cupy and a GPU are
    there, else the CPU), "cpu", "gpu", a device string, or a function
    `(rank_info, task) -> device string` that decides per rank. When a GPU is
    asked for but missing, soft placement warns and falls back to the CPU;
    `strict=True` raises DevicePlacementError instead. `memory_fraction` caps
    cupy's memory pool (default: an equal share among the ranks on one GPU).
    `threads` caps BLAS/OpenMP threads (default: cores / ranks on this node).
    """
    info = runtime.init()
    spec = _requested(device, info, task)
    n_gpus = visible_gpus() if spec.device_type != "cpu" else 0
    if spec.device_type == "gpu" and n_gpus == 0:
        why = "cupy is not installed" if backend.cupy_or_none() is None else "no GPU is visible"
        msg = f"rank {info.rank} asked for {spec} but {why}"
        if strict:
            raise DevicePlacementError(msg)
        warnings.warn(msg + "; placing it on /cpu:0", RuntimeWarning, stacklevel=2)
        spec = DeviceSpec("cpu", 0, spec.job, spec.task)
    elif spec.device_type is None:  # auto
        kind = "gpu" if n_gpus else "cpu"
        spec = DeviceSpec(kind, info.local_rank % n_gpus if n_gpus else 0, spec.job, spec.task)
    elif spec.device_type == "gpu" and spec.index >= n_gpus:
        msg = f"rank {info.rank} asked for {spec} but only {n_gpus} GPU(s) are visible"
        if strict:
            raise DevicePlacementError(msg)
        warnings.warn(msg + f"; using gpu:{spec.index % n_gpus}", RuntimeWarning, stacklevel=2)
        spec = DeviceSpec("gpu", spec.index % n_gpus, spec.job, spec.task)
    n_threads = limit_threads(threads, info)
    if spec.device_type == "gpu":
        limit = _pin_gpu(spec.index, info, n_gpus, memory_fraction)
        return Placement(spec, backend.require_cupy(), n_threads, limit)
    if memory_fraction is not None:  # said, not silently dropped
        warnings.warn(
            f"rank {info.rank} runs on {spec}: memory_fraction={memory_fraction} caps a GPU's "
            "memory pool and is ignored here",
            RuntimeWarning,
            stacklevel=2,
        )
    return Placement(spec, np, n_threads)


def _requested(device, info: runtime.RankInfo, task) -> DeviceSpec:
    if callable(device):
        device = device(info, task)
    if isinstance(device, DeviceSpec):
        spec = device
    elif device in ("auto", None):
        spec = DeviceSpec()
    elif device in ("cpu", "gpu"):
        spec = DeviceSpec(device, -1 if device == "gpu" else 0)
    else:
        spec = DeviceSpec.parse(device)
    if spec.device_type == "gpu" and spec.index == -1:  # "gpu": pick by local rank
        n = visible_gpus()
        spec = DeviceSpec("gpu", info.local_rank % n if n else 0)
    job = getattr(task, "job", spec.job)
    index = getattr(task, "index", spec.task)
    other_job = spec.job is not None and spec.job != job
    if other_job or (spec.task is not None and spec.task != index):
        warnings.warn(  # said, not silently rewritten
            f"device {device!r} names another task than this rank's (/job:{job}/task:{index}): "
            "a rank runs on its own task; a variable goes to a ps task through the ps "
            "exchange's placement (docs/ps.md). This rank uses the device type only.",
            RuntimeWarning,
            stacklevel=3,
        )
    return DeviceSpec(spec.device_type, spec.index, job, index)


def _pin_gpu(index: int, info: runtime.RankInfo, n_gpus: int, fraction: float | None) -> int:
    cp = backend.require_cupy()
    cp.cuda.Device(index).use()
    if fraction is None:
        sharing = len(range(index, info.local_size, n_gpus))  # local ranks on this GPU
        fraction = 1.0 / max(1, sharing) if sharing > 1 else None
    if fraction is None:
        return None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"memory_fraction must be in (0, 1], got {fraction}")
    pool = cp.get_default_memory_pool()
    pool.set_limit(fraction=fraction)
    return int(pool.get_limit())


def limit_threads(threads: int | None, info: runtime.RankInfo) -> int:
    """Cap BLAS/OpenMP threads so the ranks of a node share its cores."""
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // max(1, info.local_size))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)  # for child processes and late-loaded libraries
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:
        pass
    return threads


def placement_line(info: runtime.RankInfo, task, placement: Placement) -> str:
    """One line for --log-device-placement."""
    name = task.name if task is not None else "-"
    return (
        f"rank {info.rank:>3}  host {info.host}  node {info.node_index}  "
        f"{name}  device {placement.device.device_type}:{placement.device.index}  "
        f"threads {placement.threads}"
    )


def log_device_placement(
    info: runtime.RankInfo, task, placement: Placement, comm=None, guard=None
) -> None:
    """Rank 0 of `comm` (or of `guard`'s communicator) prints one line per rank, in rank order."""
    from .guard import Guard

    own = guard is None
    guard = guard or Guard(comm or runtime.world_comm(), name="placement report")
    lines = guard.gather(placement_line(info, task, placement), what="the placement lines")
    if guard.rank == 0:
        print("\n".join(lines), flush=True)
    if own:
        guard.free()
