#!/usr/bin/env bash
# Image-to-video and video-to-video at full Wan2.1-T2V-1.3B size (random weights) with --profile:
# an 832x480 test image -> 5 s of video (--i2v), then that video restyled (--v2v --strength 0.6),
# timing the VAE encode as part of initialization. Logs in $OUT_DIR. Run from the project root on the
# GPU machine after `source .gpu/enter.sh`:   bench/e2e/conditioning.sh OUT_DIR
set -euo pipefail
out=${1:?output directory}
source bench/e2e/random-weights.sh
img=/tmp/sfc-e2e-image.png
node --input-type=module -e '
import { PNG } from "pngjs";
import { writeFileSync } from "node:fs";
const p = new PNG({ width: 832, height: 480 });
for (let y = 0; y < 480; y++)
  for (let x = 0; x < 832; x++) p.data.set([(x * 255) / 831, (y * 255) / 479, 128, 255], 4 * (y * 832 + x));
writeFileSync(process.argv[1], PNG.sync.write(p));
' "$img"
args=("${weights[@]}" --prompt "a red fox running through fresh snow at dawn" --format avi --no-progress --profile)
node cli/sfc.js infer "${args[@]}" --out /tmp/sfc-i2v --num-frames 21 --i2v "$img" | tee "$out/infer-i2v.txt"
node cli/sfc.js infer "${args[@]}" --out /tmp/sfc-v2v --v2v "/tmp/sfc-i2v/a red fox running through fresh snow at dawn-0.avi" \
  --strength 0.6 | tee "$out/infer-v2v.txt"
