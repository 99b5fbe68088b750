"""hpcdist: distributed neural-network training over MPI ranks."""

from importlib import import_module

from .errors import (
    CancelledError,
    CheckpointError,
    ClusterSpecError,
    CollectiveTimeoutError,
    ConfigMismatchError,
    DataError,
    DeadlineExceededError,
    DevicePlacementError,
    ExchangeError,
    ExchangeTimeoutError,
    HpcdistError,
    NonFiniteGradientError,
    OutOfRangeError,
)
from .runtime import (
    RankInfo,
    abort,
    catch_preemption,
    host,
    init,
    local_rank,
    local_size,
    node_index,
    rank,
    rank_info,
    size,
)

__version__ = "0.1.0"

# Heavier parts load on first use, so `import hpcdist` stays quick and cupy,
# h5py and friends are only imported by the code that needs them.
_LAZY = {
    "Trainer": "hpcdist.trainer",
    "DistributedOptimizer": "hpcdist.distributed",
    "TrainConfig": "hpcdist.config",
    "Guard": "hpcdist.guard",
    "ClusterSpec": "hpcdist.cluster",
    "Cluster": "hpcdist.cluster",
    "Task": "hpcdist.cluster",
    "DeviceSpec": "hpcdist.devices",
    "Placement": "hpcdist.devices",
    "pin_device": "hpcdist.devices",
    "Compression": "hpcdist.compression",
    "allreduce": "hpcdist.exchange",
    "grouped_allreduce": "hpcdist.exchange",
    "allreduce_async": "hpcdist.exchange",
    "grouped_allreduce_async": "hpcdist.exchange",
    "broadcast": "hpcdist.exchange",
    "broadcast_parameters": "hpcdist.exchange",
    "Exchange": "hpcdist.exchange",
    "AllreduceExchange": "hpcdist.exchange",
}

__all__ = [
    "CancelledError",
    "CheckpointError",
    "ClusterSpecError",
    "CollectiveTimeoutError",
    "ConfigMismatchError",
    "DataError",
    "DeadlineExceededError",
    "DevicePlacementError",
    "ExchangeError",
    "ExchangeTimeoutError",
    "HpcdistError",
    "NonFiniteGradientError",
    "OutOfRangeError",
    "RankInfo",
    "abort",
    "catch_preemption",
    "host",
    "init",
    "local_rank",
    "local_size",
    "node_index",
    "rank",
    "rank_info",
    "size",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpcdist' has no attribute {name!r}")
