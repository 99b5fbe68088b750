#!/usr/bin/env bash
# Submit every jobscript marked "# ci: smoke" with sbatch, wait for all of them and
# fail unless each finished with exit code 0. Needs a running SLURM cluster
# (tests/slurm/start_local_cluster.sh) and hpcdist installed.
#
#   bash tests/slurm/run_smoke_jobs.sh [jobscript ...]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
limit=${HPCDIST_SMOKE_TIMEOUT:-900}
if [ $# -gt 0 ]; then scripts=("$@"); else
  mapfile -t scripts < <(grep -l '^# ci: smoke' "$root"/jobscripts/*.sbatch)
fi
[ ${#scripts[@]} -gt 0 ] || { echo "no smoke jobscripts found" >&2; exit 1; }

out=$(mktemp -d /tmp/hpcdist-smoke.XXXXXX)
declare -A pids
for script in "${scripts[@]}"; do
  name=$(basename "$script" .sbatch)
  # --wait makes sbatch exit with the job's exit code once it ends; for a job array
  # (search_array.sbatch) once every task has ended, with the highest task exit code.
  (cd "$root" && exec timeout "$limit" sbatch --wait --output="$out/$name-%j.out" "$script") \
    >"$out/$name.sbatch.log" 2>&1 &
  pids[$name]=$!
  echo "submitted $name"
done

failed=0
for name in "${!pids[@]}"; do
  wait "${pids[$name]}"; rc=$?
  echo "===== $name: exit $rc ($(cat "$out/$name.sbatch.log"))"
  cat "$out/$name"-*.out 2>/dev/null | tail -n 60
  [ "$rc" = 0 ] || failed=$((failed + 1))
done
squeue 2>/dev/null | tail -n +2 | grep -q . && { echo "jobs still queued:"; squeue; }
echo "SLURM smoke jobs (sbatch --wait):"
echo "smoke: $(( ${#pids[@]} - failed )) passed, $failed failed"
[ "$failed" = 0 ]
