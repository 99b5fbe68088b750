"""python -m hpcdist.train with one rank stopping itself (SIGSTOP) at a named point.

    stop_rank.py WHERE RANK [train flags...]

WHERE: "validation" (as it joins the validation sums), "preempt" (at the
pre-emption check), "checkpoint" (as it would send its part of a
checkpoint) or "pipeline" (inside the input pipeline, after 3 batches).
"""

import os
import signal
import sys

from hpcdist import guard, runtime, train
from hpcdist.data import InputPipeline

where, victim, flags = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
AT = {
    "validation": ("allreduce", "the validation loss and accuracy sums"),
    "preempt": ("allreduce", "the pre-emption check"),
    "checkpoint": ("gather", "every rank's part of checkpoint"),
}


def stop() -> None:
    print(f"rank {victim}: stopping itself ({where})", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)


def stop_at(method: str, what: str) -> None:
    real = getattr(guard.Guard, method)

    def patched(self, *args, **kwargs):
        if kwargs.get("what", "").startswith(what):
            stop()
        return real(self, *args, **kwargs)

    setattr(guard.Guard, method, patched)


def stop_in_pipeline() -> None:
    real = InputPipeline.epoch

    def patched(self, epoch):
        for i, batch in enumerate(real(self, epoch)):
            if i == 3 and self.batch_size == 16:  # the training pipeline, not validation
                stop()
            yield batch

    InputPipeline.epoch = patched


if runtime.init().rank == victim:
    stop_in_pipeline() if where == "pipeline" else stop_at(*AT[where])
raise SystemExit(train.main(flags))
