"""One ps rank serving several models at the same time.

    # on a ps rank; the workers train model a and model b (in any interleaving)
    stats_a, stats_b = hpcdist.ps.serve(exchange_a, exchange_b)

Every exchange has its own communicator, so the models' messages never mix.
One loop looks at each exchange in turn: first for its worker 0's set-up
(which variables the model's container already holds, then the shard plan:
PsExchange.take_setup), then its ParameterServer's next message. It backs off
(hpcdist.deadline.Deadline.pause) only when no exchange had anything to do, so
a busy model is never held up by an idle one and an idle ps rank does not spin.
Models that name one container share its variables while they train
(containers.py). `PsExchange.serve()` is this loop over one exchange.
"""

from __future__ import annotations

from ..deadline import Deadline
from ..errors import ExchangeError


def serve(*exchanges) -> list[dict]:
    """Serve `exchanges` (PsExchange objects of this ps rank) until every model's workers are
    done; each exchange's statistics, in order."""
    if not exchanges:
        raise ValueError("serve() needs at least one parameter-server exchange")
    for i, ex in enumerate(exchanges):
        if not getattr(ex, "is_ps", False):
            raise ExchangeError(
                f"serve(): exchange {i} is not a parameter-server exchange of a ps rank "
                "(workers attach and synchronize)"
            )
    setups = [Deadline(ex.timeout) for ex in exchanges]
    servers: list = [None] * len(exchanges)
    results: list[dict | None] = [None] * len(exchanges)
    backoff = Deadline(max(ex.timeout for ex in exchanges))
    while any(r is None for r in results):
        busy = False
        for i, ex in enumerate(exchanges):
            if results[i] is not None:
                continue
            if servers[i] is None:
                servers[i], busy_here = ex.take_setup(setups[i])
            else:
                busy_here = servers[i].poll()
                if servers[i].finished:
                    results[i] = servers[i].finish()
            busy = busy or busy_here
        if busy:
            backoff.reset_backoff()
        else:
            backoff.pause()
    return results
