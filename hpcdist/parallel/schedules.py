"""Pipeline schedules as data: a table of actions per stage, checked for deadlocks before it runs.

    table = schedules.build("1f1b", stages=4, micro_batches=8)   # or "gpipe"
    schedules.check(table)                 # ScheduleError naming the stuck stages, or None
    schedules.bubble(table)                # idle share with unit forward/backward costs
    schedules.peak_activations(table)      # micro-batches held at once, per stage

A stage's list holds three kinds of Action: "forward" and "backward" of one
micro-batch, and "comm", a group of point-to-point Ops (send/recv of one
micro-batch's activations or gradients) posted together and finished
together. The checker plays the table under the strictest MPI semantics: a
send completes only when its matching receive is posted (no buffering), so a
table it passes cannot deadlock whatever the MPI library buffers. Crossing
transfers between neighbours (a stage sending activations while its
successor sends it gradients) are therefore put in one group, as
Megatron-LM's send_forward_recv_backward does.

GPipe: all forwards, then all backwards; bubble (K-1)/(M+K-1) for K stages,
M micro-batches and equal forward and backward costs. 1F1B (PipeDream-flush):
stage s runs min(M, K-1-s) warm-up forwards, then alternates one forward and
one backward, then drains; the same bubble, but at most min(M, K-s)
micro-batches of activations held instead of M. Both handle M < K.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HpcdistError


class ScheduleError(HpcdistError, ValueError):
    """A schedule table that would deadlock or breaks a data dependency."""


@dataclass(frozen=True)
class Op:
    """One transfer: `kind` send/recv of `what` (act/grad) of micro-batch `micro` with `peer`."""

    kind: str
    what: str
    micro: int
    peer: int

    def partner(self, me: int) -> Op:
        """The op the peer must post for this one to complete."""
        return Op("recv" if self.kind == "send" else "send", self.what, self.micro, me)

    def __str__(self) -> str:
        way = "to" if self.kind == "send" else "from"
        return f"{self.kind} {self.what} of micro-batch {self.micro} {way} stage {self.peer}"


@dataclass(frozen=True)
class Action:
    """forward/backward of `micro`, or a "comm" group of `ops`."""

    kind: str
    micro: int = -1
    ops: tuple[Op, ...] = ()

    def __str__(self) -> str:
        if self.kind == "comm":
            return "{" + ", ".join(map(str, self.ops)) + "}"
        return f"{self.kind} {self.micro}"


Table = tuple[tuple[Action, ...], ...]


def _comm(*ops: Op | None) -> list[Action]:
    ops = tuple(op for op in ops if op is not None)
    return [Action("comm", ops=ops)] if ops else []


class _Stage:
    """Builds one stage's list: the neighbour transfers around each forward and backward."""

    def __init__(self, s: int, stages: int):
        self.s, self.last = s, s == stages - 1
        self.actions: list[Action] = []

    def recv_act(self, m):
        return Op("recv", "act", m, self.s - 1) if self.s > 0 else None

    def send_act(self, m):
        return Op("send", "act", m, self.s + 1) if not self.last else None

    def recv_grad(self, m):
        return Op("recv", "grad", m, self.s + 1) if not self.last else None

    def send_grad(self, m):
        return Op("send", "grad", m, self.s - 1) if self.s > 0 else None

    def add(self, *items) -> None:
        for item in items:
            self.actions += item if isinstance(item, list) else [item]


def gpipe(stages: int, micro_batches: int) -> Table:
    """GPipe: every forward, then every backward (last micro-batch first)."""
    _check_sizes(stages, micro_batches)
    table = []
    for s in range(stages):
        st = _Stage(s, stages)
        for m in range(micro_batches):
            st.add(_comm(st.recv_act(m)), Action("forward", m), _comm(st.send_act(m)))
        for m in reversed(range(micro_batches)):
            st.add(_comm(st.recv_grad(m)), Action("backward", m), _comm(st.send_grad(m)))
        table.append(tuple(st.actions))
    return tuple(table)


def one_f_one_b(stages: int, micro_batches: int) -> Table:
    """1F1B: min(M, K-1-s) warm-up forwards, one forward one backward, then the drain."""
    _check_sizes(stages, micro_batches)
    table = []
    for s in range(stages):
        st, m_count = _Stage(s, stages), micro_batches
        warm = min(m_count, stages - 1 - s)
        for m in range(warm):
            st.add(_comm(st.recv_act(m)), Action("forward", m), _comm(st.send_act(m)))
        if warm < m_count:
            st.add(_comm(st.recv_act(warm)))
        for i in range(m_count - warm):
            f, b = warm + i, i
            nxt = f + 1 if f + 1 < m_count else None
            st.add(Action("forward", f), _comm(st.send_act(f), st.recv_grad(b)))
            st.add(Action("backward", b))
            st.add(_comm(st.send_grad(b), st.recv_act(nxt) if nxt is not None else None))
        for b in range(m_count - warm, m_count):
            st.add(_comm(st.recv_grad(b)), Action("backward", b), _comm(st.send_grad(b)))
        table.append(tuple(st.actions))
    return tuple(table)


SCHEDULES = {"gpipe": gpipe, "1f1b": one_f_one_b}


def build(name: str, stages: int, micro_batches: int) -> Table:
    """The named schedule's table, checked (ScheduleError if it could deadlock)."""
    if name not in SCHEDULES:
        raise ValueError(f"pipeline schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    from .play import check

    table = SCHEDULES[name](stages, micro_batches)
    check(table)
    return table


def _check_sizes(stages: int, micro_batches: int) -> None:
    if not isinstance(stages, int) or stages < 1:
        raise ValueError(f"a pipeline needs stages >= 1, got {stages!r}")
    if not isinstance(micro_batches, int) or micro_batches < 1:
        raise ValueError(f"a pipeline needs micro_batches >= 1, got {micro_batches!r}")
