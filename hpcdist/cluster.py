"""Roles over MPI ranks: ps / worker / chief / evaluator jobs and their task names."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mpi4py import MPI

from . import runtime
from .errors import ClusterSpecError
from .guard import Guard

#: Job names in the order their sub-communicators are created.
JOBS = ("chief", "ps", "worker", "evaluator")


@dataclass(frozen=True)
class Task:
    """One rank's role: `/job:worker/task:3` is world rank `rank`."""

    job: str
    index: int
    rank: int

    @property
    def name(self) -> str:
        return f"/job:{self.job}/task:{self.index}"

    def __str__(self) -> str:
        return self.name


class ClusterSpec:
    """Which jobs to run and how many ranks (or which ranks) each gets.

    Each value is a count or an explicit list of world ranks. A count of
    None for "worker" means "every rank left over". Counts are placed like
    this: ps tasks spread across nodes (one per node before a second on any
    node), evaluators on the last ranks, then chief and workers in rank order.
    """

    def __init__(self, jobs: Mapping[str, int | Sequence[int] | None]):
        unknown = sorted(set(jobs) - set(JOBS))
        if unknown:
            raise ClusterSpecError(f"unknown job name(s) {unknown}; the jobs are {list(JOBS)}")
        self.jobs = {job: jobs[job] for job in JOBS if job in jobs}
        for job, value in self.jobs.items():
            _check_value(job, value)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ClusterSpec:
        """Build from the flags added by add_arguments()."""
        if getattr(args, "cluster", None):
            try:
                return cls(json.loads(args.cluster))
            except json.JSONDecodeError as e:
                raise ClusterSpecError(f"--cluster is not valid JSON: {e}") from None
        jobs = {"ps": args.ps, "worker": args.workers}
        if args.chief:
            jobs["chief"] = 1
        if args.evaluator:
            jobs["evaluator"] = args.evaluator
        return cls(jobs)

    def __repr__(self) -> str:
        return f"ClusterSpec({self.jobs!r})"

    def resolve(self, nodes: Sequence[int]) -> dict[str, list[int]]:
        """Map each job to its world ranks, given every rank's node index."""
        size = len(nodes)
        explicit = {j: list(v) for j, v in self.jobs.items() if _is_list(v)}
        taken: dict[int, str] = {}
        for job, ranks in explicit.items():
            for r in ranks:
                if not 0 <= r < size:
                    raise ClusterSpecError(
                        f"job {job!r} names rank {r}, but the world has ranks 0..{size - 1}"
                    )
                if r in taken:
                    raise ClusterSpecError(f"rank {r} is in two jobs: {taken[r]!r} and {job!r}")
                taken[r] = job
        free = [r for r in range(size) if r not in taken]
        counts = {j: v for j, v in self.jobs.items() if not _is_list(v)}
        wanted = sum(v for v in counts.values() if v is not None)
        if wanted > len(free):
            asked = ", ".join(f"{j}={v}" for j, v in self.jobs.items() if v is not None)
            raise ClusterSpecError(
                f"the cluster spec asks for {wanted + len(taken)} roles ({asked}) "
                f"but only {size} ranks were launched; launch more ranks "
                f"(mpirun -n {wanted + len(taken)}) or ask for fewer roles"
            )
        result = dict(explicit)
        if counts.get("ps"):
            # Spread ps tasks: the first free rank of every node, then the second...
            position = _positions_on_node(nodes)
            by_spread = sorted(free, key=lambda r: (position[r], nodes[r], r))
            result["ps"] = sorted(by_spread[: counts["ps"]])
            free = [r for r in free if r not in result["ps"]]
        if counts.get("evaluator"):  # evaluators take the last ranks
            n = counts["evaluator"]
            result["evaluator"], free = free[len(free) - n :], free[: len(free) - n]
        for job in ("chief", "worker"):
            if job in counts and counts[job] is not None:
                result[job], free = free[: counts[job]], free[counts[job] :]
        if "worker" in counts and counts["worker"] is None:
            result["worker"], free = free, []
        if free:
            raise ClusterSpecError(
                f"ranks {free} have no job in {self!r}; give them one "
                f"(leave the worker count open to take all the rest) or launch fewer ranks"
            )
        return {j: result[j] for j in JOBS if result.get(j)}


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, range))


def _check_value(job: str, value) -> None:
    if value is None:
        if job != "worker":
            raise ClusterSpecError(f"job {job!r} needs a count or a rank list, got None")
    elif _is_list(value):
        if not all(isinstance(r, int) for r in value) or len(set(value)) != len(value):
            raise ClusterSpecError(f"job {job!r}: rank list must be distinct ints, got {value!r}")
    elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ClusterSpecError(f"job {job!r}: count must be an int >= 0, got {value!r}")


def _positions_on_node(nodes: Sequence[int]) -> list[int]:
    """For each rank, how many lower ranks share its node."""
    seen: dict[int, int] = {}
    positions = []
    for node in nodes:
        positions.append(seen.get(node, 0))
        seen[node] = positions[-1] + 1
    return positions


class Cluster:
    """The resolved roles, this rank's task and its job's sub-communicator."""

    def __init__(self, spec: ClusterSpec, comm: MPI.Comm | None = None, guard: Guard | None = None):
        info = runtime.init()
        self.comm = comm or (guard.comm if guard else runtime.world_comm())
        own = guard is None
        guard = guard or Guard(self.comm, name="cluster")
        nodes = guard.allgather(info.node_index, what="every rank's node index")
        if own:
            guard.free()
        self.spec = spec
        self.jobs = spec.resolve(nodes)
        self.tasks = [None] * self.comm.size
        for job, ranks in self.jobs.items():
            for index, r in enumerate(ranks):
                self.tasks[r] = Task(job, index, r)
        self.task: Task = self.tasks[self.comm.rank]
        color = JOBS.index(self.task.job)
        self.job_comm = self.comm.Split(color, self.task.index)

    def ranks(self, job: str) -> list[int]:
        """World ranks of `job` ([] when the job is not in the cluster)."""
        return list(self.jobs.get(job, []))

    def num_tasks(self, job: str) -> int:
        return len(self.jobs.get(job, []))

    def describe(self) -> str:
        """A few lines naming every job and its ranks."""
        return "\n".join(
            f"  {job:<9} {len(r):>3} task(s) on ranks {r}" for job, r in self.jobs.items()
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --ps, --workers, --chief, --evaluator and --cluster to a parser."""
    g = parser.add_argument_group("cluster roles")
    g.add_argument(
        "--ps", type=int, default=0, metavar="N", help="parameter-server tasks (default 0)"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker tasks (default: every rank not given another job)",
    )
    g.add_argument("--chief", action="store_true", help="add one chief task")
    g.add_argument("--evaluator", type=int, default=0, metavar="N", help="evaluator tasks")
    g.add_argument(
        "--cluster",
        metavar="JSON",
        help='explicit spec, e.g. \'{"ps": [0, 4], "worker": [1, 2, 3, 5, 6, 7]}\'; '
        "overrides the counts above",
    )
