"""Start a separate mpiexec job from a test and return what it did (see hpcdist.launcher)."""

from hpcdist.launcher import ROOT, Result, clean_env, mpiexec, run_mpi

__all__ = ["ROOT", "Result", "clean_env", "mpiexec", "run_mpi"]
