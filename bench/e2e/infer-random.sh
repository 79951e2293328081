#!/usr/bin/env bash
# End-to-end `sfc infer` at full Wan2.1-T2V-1.3B size with random weights (no real checkpoint is
# available on the GPU machine): the project's PyTorch references write bf16 weights in the
# checkpoints' layouts (DiT, VAE decoder, UMT5-XXL), then sfc generates a 5-second video (21 latent
# frames) and a 30-second one (120 latent frames) on a rolling cache (window 12 + sink 1), with
# --profile. Run from the project root on the GPU machine after `source .gpu/enter.sh`:
#   bench/e2e/infer-random.sh OUT_DIR
set -euo pipefail
out=${1:?output directory}
source bench/e2e/random-weights.sh
args=("${weights[@]}"
  --prompt "a red fox running through fresh snow at dawn" --format avi --no-progress --profile)
node cli/sfc.js infer "${args[@]}" --out /tmp/sfc-e2e-videos/short --num-frames 21 | tee "$out/infer-21.txt"
node cli/sfc.js infer "${args[@]}" --out /tmp/sfc-e2e-videos/long --num-frames 120 \
  --set model_kwargs.local_attn_size=12 --set model_kwargs.sink_size=1 | tee "$out/infer-120.txt"
ls -la /tmp/sfc-e2e-videos/short /tmp/sfc-e2e-videos/long | tee "$out/videos.txt"
