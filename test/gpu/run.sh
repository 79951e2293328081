#!/usr/bin/env bash
# Runs on the GPU machine from the project root of a copied tree (see ../shared/gpu/README.md):
# unpacks the carried Node.js and build, runs the GPU tests and the benchmarks named as arguments,
# and leaves logs and JSON results under $OUT (or ./out). Prints a short summary last.
#   test/gpu/run.sh [bench-module ...]     e.g. test/gpu/run.sh bench/runtime/launch
set -uo pipefail
out=${OUT:-out}
mkdir -p "$out/results"
source .gpu/enter.sh >"$out/enter.log" 2>&1 || { cat "$out/enter.log"; exit 1; }
export SFC_BENCH_OUT="$out/results" SFC_CACHE_DIR=${SFC_CACHE_DIR:-/tmp/sfc-cache}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >"$out/nvidia-smi.csv" 2>&1
node cli/sfc.js doctor >"$out/doctor.txt" 2>&1
status=0
if [[ ${SFC_SKIP_TESTS:-0} != 1 ]]; then
  node node_modules/vitest/vitest.mjs run --config vitest.gpu.config.ts --reporter=verbose >"$out/gpu-tests.log" 2>&1 || status=1
fi
for b in "$@"; do
  SFC_BENCH_COMMAND="node dist/$b.js" node "dist/$b.js" >>"$out/bench.log" 2>&1 || status=1
done
cat "$out/doctor.txt"
grep -E "✓|×|↓|Test Files|Tests |FAIL|Error" "$out/gpu-tests.log" 2>/dev/null | tail -60
tail -n 20 "$out/bench.log" 2>/dev/null
exit $status
