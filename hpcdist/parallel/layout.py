"""2-D layouts: model-parallel groups of consecutive ranks, replicated data-parallel.

    layout = Layout2D(roles.job_comm, mp_size=2)   # 4 workers: groups {0,1} and {2,3}
    layout.mp_comm     # this rank's model-parallel group (tensor split or pipeline stages)
    layout.dp_comm     # the ranks holding the same part in the other replicas
    layout.replica     # which replica this rank belongs to (its data-parallel rank)

Rank r of the job is member r % mp_size of replica r // mp_size. Every rank
of a replica reads what data-parallel rank `replica` of a plain job with
`replicas` ranks would read (the data plan runs over dp_comm), and the
gradients of each part are averaged over dp_comm.
"""

from __future__ import annotations

from ..guard import Guard


class Layout2D:
    """mp_size x replicas ranks of `comm`, split into the two communicators."""

    def __init__(self, comm, mp_size: int, *, timeout: float | None = None):
        if not isinstance(mp_size, int) or mp_size < 1:
            raise ValueError(f"mp_size must be an int >= 1, got {mp_size!r}")
        if comm.size % mp_size:
            raise ValueError(
                f"--mp-size {mp_size} does not divide the {comm.size} worker ranks: launch a "
                f"multiple of {mp_size} ranks"
            )
        self.mp_size, self.replicas = mp_size, comm.size // mp_size
        self.member, self.replica = comm.rank % mp_size, comm.rank // mp_size
        self.mp_comm = comm.Split(self.replica, self.member)
        self.dp_comm = comm.Split(self.member, self.replica)
        self.mp_guard = Guard(self.mp_comm, timeout, name="model-parallel group")

    def describe(self) -> str:
        return (
            f"  layout    {self.replicas} replica(s) x {self.mp_size} model-parallel rank(s); "
            "each replica reads what one data-parallel rank would"
        )

    def free(self) -> None:
        """Free the communicators (collective over the job)."""
        self.mp_guard.free()
        for comm in (self.mp_comm, self.dp_comm):
            comm.Free()
