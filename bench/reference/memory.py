"""PyTorch baselines for bench/kernels/memory.ts: the same memory-bound operations of the Wan DiT at
the same sizes, written the way the reference model code writes them (eager PyTorch, plus
torch.compile where it helps), timed with CUDA events (median of 20 after warm-up) on random data.

Run on the GPU machine:  python3 bench/reference/memory.py OUT.json
"""
import json
import sys

import torch

torch.manual_seed(0)
dev = "cuda"
D, H, TPF = 1536, 12, 1560


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


results = []


def bench(name, fn, nbytes):
    for label, f in (("eager", fn), ("compiled", torch.compile(fn))):
        try:
            ms = timed(f)
            results.append({"name": name, "mode": label, "ms": ms, "GBs": nbytes / (ms * 1e6)})
        except Exception as e:  # torch.compile may be unavailable; keep the eager number
            results.append({"name": name, "mode": label, "error": str(e)[:200]})


src = torch.empty(1 << 29, dtype=torch.bfloat16, device=dev).normal_()
dst = torch.empty_like(src)
copy_ms = timed(lambda: dst.copy_(src))
copy_gbs = 2 * src.numel() * 2 / (copy_ms * 1e6)
del src, dst

# LayerNorm + modulate on the float32 residual stream (as WanAttentionBlock: norm(x) * (1 + scale) + shift)
R = 45 * TPF
x = torch.randn(R, D, device=dev)
shift = torch.randn(R // TPF, 1, D, device=dev)
scale = torch.randn(R // TPF, 1, D, device=dev)
norm = torch.nn.LayerNorm(D, elementwise_affine=False, eps=1e-6).to(dev)


def ln_mod():
    y = norm(x).unflatten(0, (R // TPF, TPF)) * (1 + scale) + shift
    return y.to(torch.bfloat16)


bench("LayerNorm + modulate (f32 in, bf16 out)", ln_mod, R * D * 6 + 2 * (R // TPF) * D * 4)
del x

R2 = 90000
xb = torch.randn(R2, D, device=dev, dtype=torch.bfloat16)
w = torch.randn(D, device=dev, dtype=torch.bfloat16)


def rms():  # WanRMSNorm: float32 statistics, cast back, times the weight
    xf = xb.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + 1e-6)).type_as(xb) * w


bench("RMSNorm (bf16)", rms, R2 * D * 4)


def fp8_rows():
    amax = xb.abs().amax(dim=-1, keepdim=True).float()
    s = torch.clamp(amax / 448.0, min=1e-12)
    return (xb.float() / s).to(torch.float8_e4m3fn), s


bench("cast to FP8 e4m3, per-row scales", fp8_rows, R2 * D * 3 + R2 * 4)
del xb

# RoPE as the reference applies it: complex multiply in float64 (rope_apply), back to bf16
L = 90000
q = torch.randn(L, H, 128, device=dev, dtype=torch.bfloat16)
freqs = torch.polar(torch.ones(L, 1, 64, device=dev, dtype=torch.float64), torch.randn(L, 1, 64, device=dev, dtype=torch.float64))


def rope_f64():
    xc = torch.view_as_complex(q.to(torch.float64).reshape(L, H, 64, 2))
    return torch.view_as_real(xc * freqs).flatten(2).to(torch.bfloat16)


bench("3-D RoPE (bf16, 12 heads x 128)", rope_f64, L * H * 128 * 4)

out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "copyGBs": copy_gbs, "results": results}
json.dump(out, open(sys.argv[1] if len(sys.argv) > 1 else "memory-torch.json", "w"), indent=1)
print(f"copy {copy_gbs:.0f} GB/s")
for r in results:
    print(f"{r['name']:42} {r['mode']:9} " + (f"{r['GBs']:7.0f} GB/s {r['ms']:.3f} ms" if "ms" in r else r["error"]))
