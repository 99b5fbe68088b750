"""Device strings, pinning, soft/strict placement, thread limits."""

import numpy as np
import pytest

import hpcdist
from hpcdist import devices
from hpcdist.devices import DeviceSpec
from hpcdist.errors import DevicePlacementError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/job:worker/task:1/gpu:0", DeviceSpec("gpu", 0, "worker", 1)),
        ("/cpu:0", DeviceSpec("cpu", 0)),
        ("gpu:1", DeviceSpec("gpu", 1)),
        ("/job:ps/task:0/cpu:0", DeviceSpec("cpu", 0, "ps", 0)),
        ("/job:ps", DeviceSpec(None, 0, "ps", None)),
        ("/device:GPU:2", DeviceSpec("gpu", 2)),
    ],
)
def test_parse(text, expected):
    assert DeviceSpec.parse(text) == expected


def test_parse_round_trip():
    for text in ["/job:worker/task:1/gpu:0", "/cpu:0", "/gpu:3"]:
        assert str(DeviceSpec.parse(text)) == text


BAD_DEVICE_STRINGS = ["", "tpu:0", "/job:worker/task:x", "gpu", "/cpu:0/extra"]


@pytest.mark.parametrize("bad", BAD_DEVICE_STRINGS)
def test_parse_errors(bad):
    """The case "gpu" keeps its id: conftest reads markers, not ids (tests/test_conftest.py)."""
    with pytest.raises(ValueError, match="cannot parse device string"):
        DeviceSpec.parse(bad)


def no_gpu(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)


def test_auto_without_gpu_is_cpu(monkeypatch):
    no_gpu(monkeypatch)
    placement = hpcdist.pin_device("auto", threads=1)
    assert placement.device.device_type == "cpu" and placement.xp is np and not placement.is_gpu


def test_soft_placement_falls_back_with_warning(monkeypatch):
    no_gpu(monkeypatch)
    with pytest.warns(RuntimeWarning, match="placing it on /cpu:0"):
        placement = hpcdist.pin_device("/gpu:0", threads=1)
    assert placement.device.device_type == "cpu"


def test_strict_placement_raises(monkeypatch):
    no_gpu(monkeypatch)
    with pytest.raises(DevicePlacementError, match=r"asked for /gpu:0"):
        hpcdist.pin_device("/gpu:0", strict=True, threads=1)


def test_placement_function_decides(monkeypatch):
    no_gpu(monkeypatch)
    seen = []

    def place(info, task):
        seen.append((info.rank, task))
        return "/cpu:0"

    placement = hpcdist.pin_device(place, task="T", threads=1)
    assert seen == [(hpcdist.rank(), "T")] and placement.device.device_type == "cpu"


def test_task_recorded_in_device(monkeypatch):
    no_gpu(monkeypatch)
    task = hpcdist.Task("worker", 2, 5)
    placement = hpcdist.pin_device("cpu", task=task, threads=1)
    assert (placement.device.job, placement.device.task) == ("worker", 2)


def test_thread_limit_applies_to_blas(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    no_gpu(monkeypatch)
    placement = hpcdist.pin_device("cpu", threads=1)
    assert placement.threads == 1
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)


@pytest.mark.mpi
def test_default_threads_share_the_cores(comm, monkeypatch):
    """On 8 (pretend) cores the node's ranks share them without oversubscribing: the
    expected counts are written out, not the formula recomputed. Planted bug it catches:
    a thread formula that oversubscribes (every rank taking all the cores)."""
    import os

    no_gpu(monkeypatch)
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: set(range(8)))
    placement = hpcdist.pin_device("cpu")
    node = hpcdist.runtime.local_comm()
    expected = {1: 8, 2: 4, 3: 2, 4: 2}[node.size]
    assert placement.threads == expected and os.environ["OMP_NUM_THREADS"] == str(expected)
    assert node.allreduce(placement.threads) <= 8


@pytest.mark.gpu
def test_gpu_pinned_by_local_rank():
    import cupy

    placement = hpcdist.pin_device("auto")
    n = devices.visible_gpus()
    assert placement.is_gpu and placement.xp is cupy
    assert placement.device.index == hpcdist.local_rank() % n
    assert cupy.cuda.Device().id == placement.device.index


def test_memory_fraction_on_a_cpu_rank_warns(monkeypatch):
    """Was: ignored without a word when the rank landed on the CPU."""
    no_gpu(monkeypatch)
    with pytest.warns(
        RuntimeWarning,
        match=r"memory_fraction=0.3 caps a GPU's memory pool and "
        r"is ignored here",
    ):
        placement = hpcdist.pin_device("auto", threads=1, memory_fraction=0.3)
    assert placement.device.device_type == "cpu" and placement.gpu_memory_limit is None
