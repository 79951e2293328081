#!/usr/bin/env bash
# Flat memory over a long video: `sfc infer` at full Wan2.1-T2V-1.3B size (random weights) for 10 s
# and for 60 s of video on the rolling cache (window 12 + sink 1), with --profile; the peak device
# memory while generating (the text encoder apart: the first run encodes the prompt, the second finds
# it in the prompt cache) of the two runs goes to $OUT/long-video-<device>.json (the minute-long run
# must stay within 5% of the 10-second one). Run from the project root on the GPU machine after
# `source .gpu/enter.sh`:   bench/e2e/long-video.sh OUT_DIR
set -euo pipefail
out=${1:?output directory}
source bench/e2e/random-weights.sh
args=("${weights[@]}" --prompt "a red fox running through fresh snow at dawn" --format avi --no-progress --profile
  --set model_kwargs.local_attn_size=12 --set model_kwargs.sink_size=1)
for s in 10 60; do
  node cli/sfc.js infer "${args[@]}" --out "/tmp/sfc-long-$s" --seconds "$s" | tee "$out/infer-${s}s.txt"
done
node --input-type=module -e '
import { readFileSync, writeFileSync } from "node:fs";
import { execSync } from "node:child_process";
const out = process.argv[1];
const read = (s) => {
  const t = readFileSync(`${out}/infer-${s}s.txt`, "utf8");
  const num = (re) => Number(re.exec(t)?.[1]);
  return {
    seconds: s,
    videoFrames: num(/: (\d+) frames \(/),
    latentFrames: num(/\((\d+) latent\)/),
    peakGiB: num(/peak device memory ([\d.]+) GiB generating/),
    peakWithLoadingGiB: num(/\(([\d.]+) GiB with loading/),
    diffusionMs: num(/diffusion total (\d+) ms/),
    decodeMs: num(/VAE decode (\d+) ms/),
    framesPerSecond: num(/\(([\d.]+) frames\/s\)/),
  };
};
const runs = [read(10), read(60)];
const device = execSync("nvidia-smi --query-gpu=name --format=csv,noheader").toString().split("\n")[0].trim();
const r = { device, commit: process.env.SFC_COMMIT ?? null, command: "bench/e2e/long-video.sh", window: 12, sink: 1, runs,
  peakRatio: runs[1].peakGiB / runs[0].peakGiB };
writeFileSync(`${out}/long-video-${device.replace(/\W+/g, "_")}.json`, JSON.stringify(r, null, 1));
console.log(JSON.stringify(r));
' "$out"
