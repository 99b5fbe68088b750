#!/usr/bin/env bash
# The project's one prepared GPU check, for a session that is lent the device machine
# (one H200, 16 cores, Python 3.12, cupy-cuda13x, Open MPI 4.1.6 not CUDA-aware):
#
#   device.run  command="bash tests/gpu/device_check.sh"  carry=[".whl"]  timeout_s=580
#
# Packages missing there travel as wheels in .whl/ (docs: /work/.library/device/README.md);
# pytest-mpi, scikit-learn, tqdm and matplotlib are what the steps below need besides
# mpi4py, numpy, h5py and cupy. Every step has its own time limit and its log goes to
# $OUT; the summary at the end says which steps passed. Record what it measured in
# docs/benchmarks.md (GPU section) with the date.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/hpcdist-device-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
# The C casts (hpcdist/_casts.c) are not carried (built files are ignored): build them in
# place where the machine has a compiler and setuptools, else numpy's casts are used.
python3 setup.py -q build_ext --inplace >"$OUT/build_ext.log" 2>&1 \
  || echo "device_check: hpcdist._casts not built (see build_ext.log); numpy's casts"
MPI="mpirun --allow-run-as-root --oversubscribe"
declare -a results

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$OUT/$name.log"
  results+=("$name rc=$rc")
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
step pytest_gpu 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests
for n in 2 8; do  # the cupy exchange, none/fp16/bf16, against a float64 reference
  step "exchange_np$n" 120 $MPI -n "$n" python3 -m pytest -q -p no:cacheprovider \
    --only-mpi tests/exchange/test_exchange_gpu.py tests/exchange/test_exchange_staging.py
done
for n in 1 4; do
  step "train_gpu_np$n" 120 $MPI -n "$n" python3 -m hpcdist.train --device gpu --epochs 10 \
    --run-dir "/tmp/gpu-run-$n" --no-progress
done
step bench_allreduce_gpu 90 python3 -m hpcdist.bench allreduce --ranks-hint 2,8 \
  --workloads resnet50 --budget 1
step scaling_cpu 150 python3 -m hpcdist.bench train scaling --ranks 1,2,4,8,16 \
  --records-per-rank 4096 --epochs 2
printf '%s\n' "${results[@]}" | tee "$OUT/summary.txt"
