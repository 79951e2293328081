#!/usr/bin/env bash
# On the GPU machine: compiles the sm_90a GEMM instantiations with nvcc and counts the tensor-core
# instructions in their SASS (cuobjdump), to confirm the wgmma path (HGMMA / QGMMA) is taken.
#   test/gpu/sass.sh OUT_DIR
set -uo pipefail
out=${1:-out}
mkdir -p "$out/sass"
node --input-type=module -e "
import { gemmSm90, maxStages } from './dist/compiler/templates/gemm.js';
import { writeFileSync } from 'node:fs';
for (const [input, bn] of [['bf16', 256], ['e4m3', 256], ['bf16', 128]]) {
  const a = gemmSm90({ input, output: 'bf16', bn, stages: maxStages(bn) });
  writeFileSync('$out/sass/' + a.entry + '.cu', a.source);
}"
nvcc=${CUDA_HOME:-/usr/local/cuda}/bin/nvcc
dump=${CUDA_HOME:-/usr/local/cuda}/bin/cuobjdump
for f in "$out"/sass/*.cu; do
  "$nvcc" -cubin -gencode=arch=compute_90a,code=sm_90a -o "${f%.cu}.cubin" "$f" || continue
  if [[ -x $dump ]]; then
    "$dump" -sass "${f%.cu}.cubin" >"${f%.cu}.sass"
    echo "$(basename "$f"): $(grep -oE '\b(HGMMA|QGMMA|HMMA|UTMALDG|SYNCS)[.A-Z0-9x]*' "${f%.cu}.sass" | sort | uniq -c | tr '\n' ' ')"
  else
    echo "no cuobjdump at $dump"
  fi
done
