"""Test set-up: MPI facts in the header, per-rank temp dirs and logs, gpu/launcher markers.

After each test marked `mpi` (at world size > 1) the ranks agree on its
outcome with one allreduce under a deadline: a test that failed on any rank is
reported failed on every rank, naming the ranks it failed on; a rank whose
test failed waits only $HPCDIST_TEST_FAILED_WAIT s (default 10) for the
others, and when they do not come (stuck in the test's collectives it left)
it prints its failure and aborts the job, instead of the others waiting in a
later collective until the 300 s timeout.
"""

import functools
import os

import numpy as np
import pytest
from mpi4py import MPI

WORLD = MPI.COMM_WORLD
#: Seconds a rank whose test failed waits for the others to agree on the outcome.
FAILED_WAIT_ENV = "HPCDIST_TEST_FAILED_WAIT"
_AGREED = pytest.StashKey[bool]()
_FAILED = pytest.StashKey[str]()
_agreement = {}  # "comm": the session's copy of the world for the agreement (size > 1)
_running = {}  # "nodeid": the test this rank is running


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
    """Skip launcher tests under mpiexec, and gpu tests without a GPU.

    The markers are looked up as markers: item.keywords also holds the test's name
    and parametrize ids, so an id "gpu" (test_parse_errors[gpu]) was skipped as a GPU test.
    """
    gpu = None
    for item in items:
        if item.get_closest_marker("launcher") is not None and WORLD.size > 1:
            item.add_marker(
                pytest.mark.skip(reason="launches its own mpiexec; runs at world size 1")
            )
        if item.get_closest_marker("gpu") is not None:
            gpu = _gpu_available() if gpu is None else gpu
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs cupy and a CUDA device"))


@pytest.fixture
def comm():
    """COMM_WORLD, after hpcdist.init()."""
    import hpcdist

    hpcdist.init()
    return WORLD


def pytest_sessionstart(session):
    _abort_past_the_capture(session.config)
    if WORLD.size > 1:  # made here, before any test: Dup() is itself a collective
        _agreement["comm"] = WORLD.Dup()


def _abort_past_the_capture(config) -> None:
    """hpcdist.runtime.abort inside a test: first stop pytest's capture and write the test's
    name and its output so far where the rank's output goes (the terminal, or its log).

    abort() writes its message to file descriptor 2, which pytest's capture holds during a
    test: a test that ended the job through a deadline or a guard printed nothing at all.
    """
    from hpcdist import runtime

    capman = config.pluginmanager.getplugin("capturemanager")
    original = runtime.abort

    @functools.wraps(original)  # inspect.unwrap(runtime.abort) is hpcdist's own
    def abort(message: str, *args, **kwargs) -> None:
        if capman is not None and capman.is_globally_capturing():
            out, err = capman.read_global_capture()
            capman.suspend_global_capture(in_=True)
            test = _running.get("nodeid", "(between tests)")
            os.write(2, f"\n{test} is ending the job on rank {WORLD.rank}; its output:\n".encode())
            os.write(2, f"{out}{err}".encode(errors="replace"))
        original(message, *args, **kwargs)

    runtime.abort = abort


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running["nodeid"] = item.nodeid
    try:
        return (yield)
    finally:
        _running.pop("nodeid", None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """One agreement per mpi test and rank: after the call, or at teardown if it never ran."""
    report = yield
    comm = _agreement.get("comm")
    if comm is None or item.get_closest_marker("mpi") is None or item.stash.get(_AGREED, False):
        return report
    if report.failed:
        item.stash[_FAILED] = report.longreprtext
    if report.when == "call" or report.when == "teardown":
        item.stash[_AGREED] = True
        _agree(item, report, comm)
    return report


def _agree(item, report, comm) -> None:
    """Allreduce which ranks failed `item`; mark it failed here too, or abort if they never come.

    A plain non-blocking allreduce under a deadline, not a Guard: past its deadline a Guard
    meets the others for a diagnosis (twice the timeout more), and a rank whose test failed
    already knows why the others are late.
    """
    from hpcdist import runtime
    from hpcdist.deadline import Deadline, wait_requests
    from hpcdist.errors import CollectiveTimeoutError
    from hpcdist.guard import check_timeout, default_timeout

    failed_here = _FAILED in item.stash
    mine = np.zeros(comm.size, np.int64)
    mine[comm.rank] = failed_here
    flags = np.empty_like(mine)
    seconds = (
        check_timeout(os.environ.get(FAILED_WAIT_ENV, "10"), FAILED_WAIT_ENV)
        if failed_here
        else default_timeout()  # a rank that passed waits as long as any collective
    )
    try:
        reqs = [comm.Iallreduce(mine, flags, op=MPI.SUM)]
        wait_requests(reqs, Deadline(seconds), f"the other ranks to agree on {item.nodeid}")
    except CollectiveTimeoutError as e:
        if failed_here:
            os.write(2, f"\n{item.nodeid} FAILED on this rank:\n{item.stash[_FAILED]}\n".encode())
        runtime.abort(
            f"{item.nodeid} {'failed' if failed_here else 'passed'} on rank {comm.rank}, and "
            f"the other ranks did not come to agree on its outcome (stuck in the test's "
            f"collectives?): {e}",
            exitcode=1,
        )
    others = [r for r in np.flatnonzero(flags).tolist() if r != comm.rank]
    if others and not report.failed:
        report.outcome = "failed"
        report.longrepr = (
            f"failed on rank(s) {others} of {comm.size} (passed here, on rank {comm.rank}); "
            "their output is in their logs (tests/run_suite.py shows it)"
        )
