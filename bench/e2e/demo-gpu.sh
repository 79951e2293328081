#!/usr/bin/env bash
# `sfc demo` on the GPU machine with random Wan2.1-T2V-1.3B weights (written by the project's PyTorch
# references, as in infer-random.sh): starts the server, drives it with bench/e2e/demo-client.ts for
# SECONDS, prints the client's measurement. After `source .gpu/enter.sh`:  bench/e2e/demo-gpu.sh OUT [SECONDS]
set -euo pipefail
out=${1:?output directory}
secs=${2:-20}
source bench/e2e/random-weights.sh
node cli/sfc.js build --model Wan2.1-T2V-1.3B --arch sm_90a --no-progress >"$out/build.log" 2>&1
node cli/sfc.js demo --port 7861 "${weights[@]}" >"$out/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do grep -q "open http" "$out/demo.log" && break; sleep 1; done
node dist/bench/e2e/demo-client.js ws://127.0.0.1:7861/ws "$secs" | tee "$out/demo-client.json"
kill $pid || true
