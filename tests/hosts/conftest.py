"""The host bed for tests marked `hosts`: 2 namespaces on 5 Gbit/s links, torn down after."""

import os

import pytest
from mpi4py import MPI

from hpcdist.bench.hostbed import BedUnavailable, HostBed


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("hosts") and MPI.COMM_WORLD.size > 1:
            item.add_marker(pytest.mark.skip(reason="starts its own jobs on the host bed"))


@pytest.fixture(scope="module")
def bed():
    """A 2-host bed (skips where namespaces cannot be made); always torn down."""
    try:
        with HostBed(2, "5gbit") as made:
            yield made
    except BedUnavailable as exc:
        if os.environ.get("HPCDIST_HOSTS_REQUIRED"):  # CI, as root: the bed must come up
            pytest.fail(f"HPCDIST_HOSTS_REQUIRED is set but no host bed: {exc}")
        pytest.skip(f"no host bed here: {exc}")
