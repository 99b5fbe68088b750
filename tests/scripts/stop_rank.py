"""python -m hpcdist.train with one rank stopping itself (SIGSTOP) at a named point.

    stop_rank.py WHERE[:NTH] RANK [train flags...]

WHERE: "validation" (as it joins the validation sums), "preempt" (at the
pre-emption check), "checkpoint" (as it would send its part of a
checkpoint), "exchange" (inside a gradient exchange call, before its share)
or "pipeline" (inside the input pipeline, after 3 batches). NTH (default 1):
stop at the NTH time the rank gets there. Just before it stops, the rank
writes the time (time.time()) to $STOP_STAMP when that is set.
"""

import os
import signal
import sys
import time

from hpcdist import AllreduceExchange, guard, runtime, train
from hpcdist.data import InputPipeline

where, victim, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
where, _, nth = where.partition(":")
nth = int(nth or 1)
AT = {
    "validation": ("allreduce", "the validation loss and accuracy sums"),
    "preempt": ("allreduce", "the pre-emption check"),
    "checkpoint": ("gather", "every rank's part of checkpoint"),
}
seen = 0


def arrived() -> None:
    """Stop here at the NTH arrival."""
    global seen
    seen += 1
    if seen != nth:
        return
    print(f"rank {victim}: stopping itself ({where}, {nth})", flush=True)
    if os.environ.get("STOP_STAMP"):
        with open(os.environ["STOP_STAMP"], "w") as f:
            f.write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGSTOP)


def stop_at(method: str, what: str) -> None:
    real = getattr(guard.Guard, method)

    def patched(self, *args, **kwargs):
        if kwargs.get("what", "").startswith(what):
            arrived()
        return real(self, *args, **kwargs)

    setattr(guard.Guard, method, patched)


def stop_in_exchange() -> None:
    real = AllreduceExchange.synchronize

    def patched(self):
        arrived()
        return real(self)

    AllreduceExchange.synchronize = patched


def stop_in_pipeline() -> None:
    real = InputPipeline.epoch

    def patched(self, epoch):
        for i, batch in enumerate(real(self, epoch)):
            if i == 3 and self.batch_size == 16:  # the training pipeline, not validation
                arrived()
            yield batch

    InputPipeline.epoch = patched


if runtime.init().rank == victim:
    if where == "pipeline":
        stop_in_pipeline()
    elif where == "exchange":
        stop_in_exchange()
    else:
        stop_at(*AT[where])
raise SystemExit(train.main(flags))
