"""PyTorch baselines for bench/kernels/gemm.ts: the Wan2.1-1.3B GEMMs of one 3-frame chunk (M = 4680
tokens) as the reference model runs them (F.linear in bf16), and FP8 e4m3 through torch._scaled_mm
(cuBLASLt) with per-tensor scales and bf16 output. CUDA-event medians of 20 after warm-up (each timing
covers 10 back-to-back calls, as bench/kernels/gemm.ts does), random inputs.

Run on the GPU machine:  python3 bench/reference/gemm.py OUT.json
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(0)
dev = "cuda"
M = 4680
SHAPES = [(1536, 1536), (8960, 1536), (1536, 8960), (64, 1536)]


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(10):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 10)
    times.sort()
    return times[len(times) // 2]


results = []
one = torch.ones((), device=dev)
for n, k in SHAPES:
    flops = 2 * M * n * k
    x = torch.randn(M, k, device=dev, dtype=torch.bfloat16)
    w = (torch.randn(n, k, device=dev) / k**0.5).to(torch.bfloat16)
    ms = timed(lambda: F.linear(x, w))
    results.append({"input": "bf16", "op": "F.linear", "M": M, "N": n, "K": k, "ms": ms, "tflops": flops / (ms * 1e9)})
    try:
        x8, w8 = x.to(torch.float8_e4m3fn), w.to(torch.float8_e4m3fn)
        ms = timed(lambda: torch._scaled_mm(x8, w8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
        results.append({"input": "e4m3", "op": "torch._scaled_mm", "M": M, "N": n, "K": k, "ms": ms, "tflops": flops / (ms * 1e9)})
    except Exception as e:  # _scaled_mm may reject a shape; keep the bf16 number
        results.append({"input": "e4m3", "op": "torch._scaled_mm", "M": M, "N": n, "K": k, "error": str(e)[:200]})

out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}
json.dump(out, open(sys.argv[1], "w"), indent=1)
for r in results:
    print(r["input"], r["op"], f'{r["M"]}x{r["N"]}x{r["K"]}', f'{r.get("tflops", 0):.0f} TFLOP/s', r.get("error", ""))
