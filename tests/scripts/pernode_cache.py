"""Give every pretend node its own data cache, then run a module: a node-local cache, faked.

HPCDIST_RANKS_PER_NODE=K PERNODE_CACHE_BASE=DIR mpiexec -n N python pernode_cache.py MODULE ARGS

Rank r (from the launcher's environment, before MPI starts) gets
$HPCDIST_CACHE = DIR/node<r // K>, the pretend node runtime.init() puts it on.
"""

import os
import runpy
import sys

RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")

rank = next(int(os.environ[v]) for v in RANK_VARIABLES if v in os.environ)
per_node = int(os.environ["HPCDIST_RANKS_PER_NODE"])
os.environ["HPCDIST_CACHE"] = os.path.join(
    os.environ["PERNODE_CACHE_BASE"], f"node{rank // per_node}"
)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
