"""Job run across the host bed (tests/hosts/bed.sh run): `python hosts_job.py MODE`.

Modes:
  exchange   AllreduceExchange (hierarchical: real nodes) and grouped_allreduce with
             none/bf16/fp16 against a float64 reference; prints 'rank R: OK nodes=M local=L'
             and, on rank 0, 'CROSS <bytes>': what must at least cross the links
"""

import sys

import numpy as np

import hpcdist

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/exchange")
from exchange_data import SHAPES, rank_data, reference, rel_error  # noqa: E402

#: The list: the exchange tests' odd shapes plus tensors big enough for the window path.
BIG = [*SHAPES, (300_000,), (2, 70_001)]
BOUNDS = {"none": 1e-6, "fp16": 2e-3, "bf16": 1.6e-2}
STEPS = 3


def exchange(comm) -> None:
    info = hpcdist.rank_info()
    cross = 0
    for comp, bound in BOUNDS.items():
        for force in (False, True):
            kw = {"compress_within_node": True} if force else {}
            with hpcdist.AllreduceExchange(compression=comp, bucket_bytes=256 << 10, **kw) as ex:
                grads = ex.attach([np.zeros(s, np.float32) for s in BIG])
                assert ex.group.num_nodes == info.num_nodes, (ex.group.num_nodes, info)
                for step in range(STEPS):
                    for g, d in zip(grads, rank_data(comm.rank, step, shapes=BIG), strict=True):
                        g[...] = d
                    ex.synchronize()
                    err = rel_error(grads, reference(comm.size, "average", step, shapes=BIG))
                    assert err <= bound, f"exchange {comp} force={force} step {step}: {err}"
                if comp == "none" and not force:
                    cross = STEPS * ex.layout.nbytes // 2  # a 2-node sum sends half each way
        for op in ("sum", "average"):
            out = hpcdist.grouped_allreduce(
                rank_data(comm.rank, 5, shapes=BIG), op=op, compression=comp
            )
            err = rel_error(out, reference(comm.size, op, 5, shapes=BIG))
            assert err <= bound, f"grouped {comp} {op}: {err}"
    with hpcdist.AllreduceExchange() as ex:  # topology "auto": measured at attach
        ex.attach([np.zeros(1000, np.float32)])
        topo = ex.topology
    print(f"rank {comm.rank}: TOPOLOGY {topo.choice} {topo.link_gbs:.4f}", flush=True)
    print(f"rank {comm.rank}: OK nodes={info.num_nodes} local={info.local_size}", flush=True)
    if comm.rank == 0:
        print(f"CROSS {cross}", flush=True)


def main() -> None:
    hpcdist.init()
    comm = hpcdist.runtime.world_comm()
    {"exchange": exchange}[sys.argv[1]](comm)


if __name__ == "__main__":
    main()
