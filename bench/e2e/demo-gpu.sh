#!/usr/bin/env bash
# `sfc demo` on the GPU machine with random Wan2.1-T2V-1.3B weights (written by the project's PyTorch
# references, as in infer-random.sh): starts the server, drives it with bench/e2e/demo-client.ts for
# SECONDS, prints the client's measurement. After `source .gpu/enter.sh`:  bench/e2e/demo-gpu.sh OUT [SECONDS]
set -euo pipefail
out=${1:?output directory}
secs=${2:-20}
w=${SFC_E2E_WEIGHTS:-/tmp/sfc-e2e-weights}
mkdir -p "$out" "$w"
[[ -f $w/dit/weights.safetensors ]] || python3 test/reference/wan_dit.py --preset 1.3b --out "$w/dit" --chunks 1 --name warm >"$out/ref-dit.log" 2>&1
[[ -f $w/vae/vae.safetensors ]] || python3 test/reference/wan_vae.py --preset wan2.1 --out "$w/vae" --frames 1 --height 60 --width 104 >"$out/ref-vae.log" 2>&1
[[ -f $w/t5/weights.safetensors ]] || python3 test/reference/umt5.py --preset xxl --out "$w/t5" --lengths 77 >"$out/ref-t5.log" 2>&1
node cli/sfc.js build --model Wan2.1-T2V-1.3B --arch sm_90a --no-progress >"$out/build.log" 2>&1
node cli/sfc.js demo --port 7861 --model Wan2.1-T2V-1.3B --checkpoint "$w/dit/weights.safetensors" --vae "$w/vae/vae.safetensors" \
  --text-encoder "$w/t5/weights.safetensors" --tokenizer test/fixtures/tokenizer/tokenizer.json >"$out/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do grep -q "open http" "$out/demo.log" && break; sleep 1; done
node dist/bench/e2e/demo-client.js ws://127.0.0.1:7861/ws "$secs" | tee "$out/demo-client.json"
kill $pid || true
