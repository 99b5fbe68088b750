"""The CUDA-aware MPI setting: device pointers reach MPI only when forced or reported."""

from hpcdist.exchange.gpu import cuda_aware_mpi


def test_setting_forces_or_forbids(monkeypatch):
    monkeypatch.setenv("HPCDIST_CUDA_AWARE_MPI", "0")
    assert cuda_aware_mpi() is False
    monkeypatch.setenv("HPCDIST_CUDA_AWARE_MPI", "1")
    assert cuda_aware_mpi() is True


def test_default_asks_the_library(monkeypatch):
    from mpi4py import MPI

    monkeypatch.delenv("HPCDIST_CUDA_AWARE_MPI", raising=False)
    query = getattr(MPI, "Query_cuda_support", None)
    expected = bool(query()) if query is not None else False
    assert cuda_aware_mpi() is expected
