"""Test set-up: MPI facts in the header, per-rank temp dirs, gpu/launcher markers."""

import os

import pytest
from mpi4py import MPI

WORLD = MPI.COMM_WORLD


def pytest_report_header(config):
    vendor, version = MPI.get_vendor()
    library = MPI.Get_library_version().splitlines()[0].strip()
    return [
        f"MPI: {vendor} {'.'.join(map(str, version))} ({library}); "
        f"rank {WORLD.rank} of {WORLD.size}; thread level {MPI.Query_thread()}"
    ]


def pytest_configure(config):
    logs = os.environ.get("HPCDIST_RANK_LOGS")
    if logs and WORLD.rank > 0:  # set by tests/run_suite.py, which shows rank 0's output
        _redirect_to_log(config, os.path.join(logs, f"rank{WORLD.rank}.log"))
    if WORLD.size > 1 and not config.option.basetemp:
        # Ranks must not race over one numbered temp dir.
        os.makedirs("/tmp/pytest-hpcdist", exist_ok=True)
        config.option.basetemp = (
            f"/tmp/pytest-hpcdist/np{WORLD.size}-rank{WORLD.rank}-{os.getpid()}"
        )


def _redirect_to_log(config, path: str) -> None:
    """Send this rank's output (file descriptors 1 and 2) to `path`, for the whole session.

    pytest's capture keeps a copy of the original descriptors and puts it back on
    1 and 2 whenever it suspends, which undid a plain dup2 (the logs then held no
    summary, and run_suite counted rank 0 alone). So global capturing is stopped,
    the descriptors redirected, and capturing started again over the log.
    """
    import sys

    os.makedirs(os.path.dirname(path), exist_ok=True)
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(path, "w")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    log.close()
    if capman is not None:
        capman.start_global_capturing()
        capman.suspend_global_capture()


def _gpu_available() -> bool:
    from hpcdist.devices import visible_gpus

    return visible_gpus() > 0


def pytest_collection_modifyitems(config, items):
    gpu = None
    for item in items:
        if "launcher" in item.keywords and WORLD.size > 1:
            item.add_marker(
                pytest.mark.skip(reason="launches its own mpiexec; runs at world size 1")
            )
        if "gpu" in item.keywords:
            gpu = _gpu_available() if gpu is None else gpu
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs cupy and a CUDA device"))


@pytest.fixture
def comm():
    """COMM_WORLD, after hpcdist.init()."""
    import hpcdist

    hpcdist.init()
    return WORLD
