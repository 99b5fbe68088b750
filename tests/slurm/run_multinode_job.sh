#!/usr/bin/env bash
# Run jobscripts/train_multinode.sbatch on the two-node cluster (start_two_node_cluster.sh)
# twice, and fail unless both pass their own checks (2 nodes reported, accuracy >= 0.95):
#   1. the digits cache on a directory both nodes share: rank 0 builds it once;
#   2. the cache in each node's private /var/tmp/hpcdist-local (LOCAL_CACHE): each node's
#      first rank builds its own copy, checked afterwards on both nodes.
# The run directories are on the shared file system (/tmp here), as the jobscript asks.
#
#   bash tests/slurm/run_multinode_job.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export SLURM_CONF=${SLURM_CONF:-/etc/slurm/two-node/slurm.conf}
limit=${HPCDIST_SMOKE_TIMEOUT:-900}
out=$(mktemp -d /tmp/hpcdist-multinode.XXXXXX)
tag=$(basename "$out")
failed=0

submit() {  # name, then VAR=value settings for the job
  local name=$1; shift
  (cd "$root" && env "$@" RUN_DIR="$out/$name-run" timeout "$limit" \
    sbatch --wait --output="$out/$name-%j.out" jobscripts/train_multinode.sbatch) \
    >"$out/$name.sbatch.log" 2>&1
  local rc=$?
  echo "===== train_multinode ($name): exit $rc ($(cat "$out/$name.sbatch.log"))"
  tail -n 40 "$out/$name"-*.out 2>/dev/null
  [ "$rc" = 0 ] || failed=$((failed + 1))
}

submit shared-cache HPCDIST_CACHE="$out/shared-cache"
copies=$(ls -d "$out"/shared-cache/digits-*/ 2>/dev/null | wc -l)
echo "shared cache: $copies copy in $out/shared-cache"
[ "$copies" = 1 ] || failed=$((failed + 1))

submit node-local-cache LOCAL_CACHE="/var/tmp/hpcdist-local/$tag"
check="test -s /var/tmp/hpcdist-local/$tag/hpcdist-cache/digits-v1-val0.2/dataset.json"
if timeout 120 srun --nodes=2 --ntasks-per-node=1 sh -c "$check && echo \$(hostname): own copy"
then :; else echo "a node has no copy of its own"; failed=$((failed + 1)); fi
[ -e "/var/tmp/hpcdist-local/$tag" ] && { echo "the node-local cache leaked here"; failed=$((failed + 1)); }

echo "multinode: $failed failure(s)"
[ "$failed" = 0 ]
