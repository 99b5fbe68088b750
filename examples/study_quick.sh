#!/bin/sh
# Exercise 10 at CI size: the same network trained six ways (allreduce sync, ps sync,
# ps sync with a backup worker, ps async with bounded staleness, tensor parallel,
# pipeline parallel), then the report's conclusion, computed from its own table.
#
#   sh examples/study_quick.sh [RUN_DIR] [more hpcdist.study flags, e.g. --straggler]
#
# The full study (20 epochs, 5 seeds, target 0.95) is `python -m hpcdist.study`;
# docs/study.md holds one measured run.
set -e
dir=${1:-runs/study-quick}
[ $# -gt 0 ] && shift
${PYTHON:-python} -m hpcdist.study --quick --run-dir "$dir" "$@"
sed -n '/^## Conclusion/,/^## Plots/p' "$dir/report.md" | sed '1d;$d'
echo "table and plots: $dir/report.md"
