#!/usr/bin/env bash
# Two-GPU runs (issue 14) on a machine with 2+ GPUs, after `source .gpu/enter.sh`:
#   bench/e2e/multi-gpu.sh OUT_DIR
# 1. `sfc infer --gpus 2` over 4 prompts at Wan2.1-T2V-1.3B size (random weights written by the
#    project's PyTorch references) against the same run on one GPU: wall times, GPU utilisation
#    sampled during the 2-GPU run, and the files compared byte for byte.
# 2. The NCCL GPU test (all-reduce and broadcast through the runtime's bindings).
set -euo pipefail
out=${1:?output directory}
source bench/e2e/random-weights.sh
printf '%s\n' "a red fox running through fresh snow at dawn" "a sailboat crossing a calm bay at sunset" \
  "a busy night market with lanterns" "waves breaking on black volcanic rocks" >"$out/prompts.txt"
args=("${weights[@]}"
  --prompts "$out/prompts.txt" --format avi --no-progress --save-with-index --num-frames 21)
# warm both GPUs' kernel caches (one shared cache directory) so neither timing includes compiling
node cli/sfc.js infer "${args[@]}" --gpus 2 --num-frames 3 --out /tmp/sfc-mg/warm >/dev/null
t0=$(date +%s.%N)
node cli/sfc.js infer "${args[@]}" --device cuda:0 --out /tmp/sfc-mg/one >"$out/one.txt"
t1=$(date +%s.%N)
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -lms 500 >"$out/util.csv" &
smi=$!
node cli/sfc.js infer "${args[@]}" --gpus 2 --out /tmp/sfc-mg/two >"$out/two.txt"
t2=$(date +%s.%N)
kill $smi || true
same=0
for f in /tmp/sfc-mg/one/*.avi; do cmp -s "$f" "/tmp/sfc-mg/two/$(basename "$f")" && same=$((same + 1)); done
python3 - "$t0" "$t1" "$t2" "$same" "$out" <<'PY'
import csv, json, os, sys
t0, t1, t2, same, out = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
busy = {}
with open(os.path.join(out, "util.csv")) as fh:
    for row in csv.reader(fh):
        if len(row) < 3 or not row[1].strip().isdigit():
            continue
        busy.setdefault(row[1].strip(), []).append(float(row[2].strip().split()[0]))
res = dict(one_gpu_s=t1 - t0, two_gpu_s=t2 - t1, speedup=(t1 - t0) / (t2 - t1), identical_files=same, prompts=4,
           mean_util_percent={k: sum(v) / len(v) for k, v in busy.items()},
           busy_samples_over_50_percent={k: sum(1 for x in v if x > 50) for k, v in busy.items()},
           samples={k: len(v) for k, v in busy.items()}, commit=os.environ.get("SFC_COMMIT"))
json.dump(res, open(os.path.join(out, "multi-gpu.json"), "w"), indent=1)
print(json.dumps(res))
PY
node node_modules/vitest/vitest.mjs run --config vitest.gpu.config.ts test/gpu/nccl.test.ts >"$out/nccl.log" 2>&1 || true
grep -E "✓|×|Tests " "$out/nccl.log" || tail -20 "$out/nccl.log"
