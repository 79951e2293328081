"""PyTorch baseline for bench/kernels/attention.ts: scaled_dot_product_attention on the Wan2.1-1.3B
self-attention shapes of one 3-frame chunk (4680 queries, 12 heads x 128, bf16) over 4680, 18720 and
32760 keys, q/k/v laid out [B, L, H, D] and transposed to [B, H, L, D] as the reference model does.
Each backend PyTorch offers is timed (default choice, flash, cuDNN, efficient); CUDA-event medians of
20 timings of 10 back-to-back calls after warm-up, random inputs.

Run on the GPU machine:  python3 bench/reference/attention.py OUT.json
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.manual_seed(0)
dev = "cuda"
LQ, H, D = 4680, 12, 128


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
q = torch.randn(1, LQ, H, D, device=dev, dtype=torch.bfloat16)
for lkv in (4680, 18720, 32760):
    k = torch.randn(1, lkv, H, D, device=dev, dtype=torch.bfloat16)
    v = torch.randn(1, lkv, H, D, device=dev, dtype=torch.bfloat16)
    flops = 4 * LQ * lkv * H * D
    call = lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    for name, backend in (("default", None), ("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            if backend is None:
                ms = timed(call)
            else:
                with sdpa_kernel(backend):
                    ms = timed(call)
            results.append({"backend": name, "Lq": LQ, "Lkv": lkv, "H": H, "D": D, "ms": ms, "tflops": flops / (ms * 1e9)})
        except Exception as e:
            results.append({"backend": name, "Lq": LQ, "Lkv": lkv, "error": str(e)[:200]})

json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, open(sys.argv[1], "w"), indent=1)
for r in results:
    print("sdpa", r["backend"], r["Lkv"], f'{r.get("tflops", 0):.0f} TFLOP/s', r.get("error", ""))
