# Sourced by the bench/e2e scripts: random Wan2.1-T2V-1.3B-size weights in the checkpoints' layouts
# (the VAE with its encoder, for --i2v/--v2v), written once by the project's PyTorch references into
# $w (default /tmp/sfc-e2e-weights), logs in $out.
w=${SFC_E2E_WEIGHTS:-/tmp/sfc-e2e-weights}
mkdir -p "$out" "$w"
[[ -f $w/dit/weights.safetensors ]] || python3 test/reference/wan_dit.py --preset 1.3b --out "$w/dit" --chunks 1 --name warm >"$out/ref-dit.log" 2>&1
[[ -f $w/vae/vae.safetensors ]] || python3 test/reference/wan_vae.py --preset wan2.1 --encode --out "$w/vae" --frames 1 --height 8 --width 8 >"$out/ref-vae.log" 2>&1
[[ -f $w/t5/weights.safetensors ]] || python3 test/reference/umt5.py --preset xxl --out "$w/t5" --lengths 77 >"$out/ref-t5.log" 2>&1
# the sfc flags that load them
weights=(--model Wan2.1-T2V-1.3B --checkpoint "$w/dit/weights.safetensors" --vae "$w/vae/vae.safetensors"
  --text-encoder "$w/t5/weights.safetensors" --tokenizer test/fixtures/tokenizer/tokenizer.json)
