"""PyTorch side of `sfc bench e2e`: the same workload in PyTorch eager bf16 with the project's own
reference modules (test/reference/wan_dit.py's causal DiT with its KV cache, wan_vae.py's streaming
decoder): random weights, chunks of 3 latent frames, 4 denoising passes + the clean cache pass per
chunk, each chunk decoded as it is made and converted to RGB bytes on the host. Attention is
PyTorch's scaled_dot_product_attention (flash); RoPE is computed in float64 as the Self-Forcing
reference does. CUDA-event times per chunk after a warm-up chunk.

  python3 bench/reference/e2e.py OUT.json [--num-frames 21] [--height 480] [--width 832]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "reference"))
import wan_dit  # noqa: E402
import wan_vae  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--num-frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--window", type=int, default=-1)
    ap.add_argument("--sink", type=int, default=0)
    a = ap.parse_args()
    dev, bf = "cuda", torch.bfloat16
    gen = torch.Generator(device=dev).manual_seed(0)
    p = dict(wan_dit.PRESETS["1.3b"], lat_h=a.height // 8, lat_w=a.width // 8)
    w = {k: v.to(bf) for k, v in wan_dit.make_weights(p, gen, dev).items()}
    vp = wan_vae.PRESETS["wan2.1"]
    vw = {k: v.to(bf) for k, v in wan_vae.make_weights(vp, gen, dev).items()}
    ctx = (torch.randn(p["text_len"], p["text_dim"], generator=gen, device=dev) * 0.5).to(bf)
    ft = (p["lat_h"] // 2) * (p["lat_w"] // 2)
    sig = wan_dit.shifted_sigmas()
    steps = [float(1000 * sig[1000 - s]) for s in (1000, 750, 500, 250)]
    mean = torch.tensor(wan_vae.MEAN, device=dev, dtype=bf).view(16, 1, 1, 1)
    std = torch.tensor(wan_vae.STD, device=dev, dtype=bf).view(16, 1, 1, 1)

    def run(num_frames):
        model = wan_dit.CausalWan(p, w, a.window, a.sink, ft, max_frames=max(21, num_frames))
        dec = wan_vae.Decoder(vp, vw)
        chunks = []
        start = torch.cuda.Event(enable_timing=True)
        start.record()
        first = None
        with torch.no_grad():
            text_kv = model.text(ctx)
            for c in range(num_frames // 3):
                e0, e1, e2 = (torch.cuda.Event(enable_timing=True) for _ in range(3))
                e0.record()
                x = torch.randn(16, 3, p["lat_h"], p["lat_w"], generator=gen, device=dev).to(bf)
                for i, t in enumerate(steps):
                    tt = torch.full((3,), t, device=dev)
                    flow = model.forward(x, tt, 3 * c, text_kv)
                    x0 = x - (t / 1000.0) * flow
                    if i + 1 < len(steps):
                        s2 = steps[i + 1] / 1000.0
                        x = (1 - s2) * x0 + s2 * torch.randn(x.shape, generator=gen, device=dev).to(bf)
                model.forward(x0, torch.zeros(3, device=dev), 3 * c, text_kv)
                e1.record()
                z = F.conv3d((x0 * std + mean)[None], vw["conv2.weight"], vw["conv2.bias"])[0]
                frames = []
                for f in range(3):
                    v = dec.frame(z[:, f : f + 1]).clamp(-1, 1)
                    frames.append(((v * 0.5 + 0.5) * 255).to(torch.uint8).permute(1, 2, 3, 0).cpu())
                e2.record()
                torch.cuda.synchronize()
                if first is None:
                    first = start.elapsed_time(e2)
                chunks.append(dict(index=c, ditMs=e0.elapsed_time(e1), decodeMs=e1.elapsed_time(e2),
                                   frames=sum(t.shape[0] for t in frames)))
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        torch.cuda.synchronize()
        return chunks, start.elapsed_time(end), first

    run(3)  # warm-up (cuDNN / cuBLAS heuristics, allocator)
    torch.cuda.reset_peak_memory_stats()
    chunks, total, first = run(a.num_frames)
    frames = sum(c["frames"] for c in chunks)
    res = dict(
        implementation="PyTorch eager bf16 (project reference modules, SDPA attention)",
        torch=torch.__version__,
        device=torch.cuda.get_device_name(),
        latentFrames=a.num_frames,
        frames=frames,
        height=a.height,
        width=a.width,
        chunks=chunks,
        ditMs=sum(c["ditMs"] for c in chunks),
        decodeMs=sum(c["decodeMs"] for c in chunks),
        totalMs=total,
        firstFrameMs=first,
        fps=frames * 1000.0 / total,
        peakBytes=torch.cuda.max_memory_allocated(),
    )
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "chunks"}))


if __name__ == "__main__":
    main()
