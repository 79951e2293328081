"""The project's own float32 PyTorch reference of the causal Wan2.1 DiT with a KV cache.

Written from the semantics in the project's reference notes (not copied from any implementation):
patch embedding, per-frame time embedding, text embedding, blocks with modulated LayerNorm,
self-attention with RMSNorm'd q/k, 3-D RoPE offset by the chunk's start frame, a KV cache written at
the chunk's position with a local window + sink eviction, cross-attention over the text, GELU FFN,
gated residuals, head and unpatchify.

It writes random bf16-representable weights (under the checkpoint's parameter names) as
safetensors, a random text context, and a rollout of the few-step causal schedule: for every chunk,
4 denoising passes and the clean cache pass, each pass's input latent, timesteps and predicted flow.
sfc's test feeds the same inputs pass by pass (its own KV cache carries over) and compares the flow.

  python3 test/reference/wan_dit.py --preset tiny --out DIR [--chunks 3] [--local-attn-size 6 --sink-size 1] [--name NAME]

With --bidirectional it writes goldens of the bidirectional DiT (BidirWan: one timestep for the whole
video, full attention, no cache) instead: per timestep of --timesteps, a noise latent of --frames
frames and its flow; --weights FILE reuses existing weights, --time N adds PyTorch timings.

  python3 test/reference/wan_dit.py --preset tiny --bidirectional --frames 6 --weights W --out DIR --name bidir

With --time-causal N it writes no goldens: it times PyTorch eager bf16 (these modules, weights cast
to bf16, SDPA attention, float64 RoPE as the reference computes it) on the few-step rollout of
--chunks chunks (4 denoising passes + the cache pass each) with CUDA events per chunk, N runs after
a warm-up chunk, into DIR/NAME.json.

  python3 test/reference/wan_dit.py --preset 1.3b --time-causal 3 --chunks 7 --out DIR --name torch-timing
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file

PRESETS = {
    "tiny": dict(dim=128, ffn=256, freq=32, heads=2, layers=2, text_dim=32, text_len=16, lat_h=6, lat_w=8),
    # one block of the 14B (its sizes; the whole model does not fit a test's time)
    "14b-1": dict(dim=5120, ffn=13824, freq=256, heads=40, layers=1, text_dim=4096, text_len=512, lat_h=60, lat_w=104),
    "1.3b": dict(dim=1536, ffn=8960, freq=256, heads=12, layers=30, text_dim=4096, text_len=512, lat_h=60, lat_w=104),
}
C = 16  # latent channels (in_dim = out_dim)
EPS = 1e-6


def bf16_randn(gen, shape, std, mean=0.0, device="cpu"):
    w = torch.randn(shape, generator=gen, device=device) * std + mean
    return w.to(torch.bfloat16).float()


def make_weights(p, gen, device):
    d, f, fr = p["dim"], p["ffn"], p["freq"]
    s = 1.0 / math.sqrt(d)
    w = {
        "patch_embedding.weight": bf16_randn(gen, (d, C, 1, 2, 2), 1 / 8, device=device),
        "patch_embedding.bias": bf16_randn(gen, (d,), 0.02, device=device),
        "text_embedding.0.weight": bf16_randn(gen, (d, p["text_dim"]), 1 / math.sqrt(p["text_dim"]), device=device),
        "text_embedding.0.bias": bf16_randn(gen, (d,), 0.02, device=device),
        "text_embedding.2.weight": bf16_randn(gen, (d, d), s, device=device),
        "text_embedding.2.bias": bf16_randn(gen, (d,), 0.02, device=device),
        "time_embedding.0.weight": bf16_randn(gen, (d, fr), 1 / math.sqrt(fr), device=device),
        "time_embedding.0.bias": bf16_randn(gen, (d,), 0.02, device=device),
        "time_embedding.2.weight": bf16_randn(gen, (d, d), s, device=device),
        "time_embedding.2.bias": bf16_randn(gen, (d,), 0.02, device=device),
        "time_projection.1.weight": bf16_randn(gen, (6 * d, d), s, device=device),
        "time_projection.1.bias": bf16_randn(gen, (6 * d,), 0.02, device=device),
        "head.modulation": bf16_randn(gen, (1, 2, d), 0.1, device=device),
        "head.head.weight": bf16_randn(gen, (C * 4, d), s, device=device),
        "head.head.bias": bf16_randn(gen, (C * 4,), 0.02, device=device),
    }
    for i in range(p["layers"]):
        b = f"blocks.{i}."
        w[b + "modulation"] = bf16_randn(gen, (1, 6, d), 0.1, device=device)
        for a in ("self_attn", "cross_attn"):
            for n in "qkvo":
                w[f"{b}{a}.{n}.weight"] = bf16_randn(gen, (d, d), s, device=device)
                w[f"{b}{a}.{n}.bias"] = bf16_randn(gen, (d,), 0.02, device=device)
            w[f"{b}{a}.norm_q.weight"] = bf16_randn(gen, (d,), 0.1, 1.0, device=device)
            w[f"{b}{a}.norm_k.weight"] = bf16_randn(gen, (d,), 0.1, 1.0, device=device)
        w[b + "norm3.weight"] = bf16_randn(gen, (d,), 0.1, 1.0, device=device)
        w[b + "norm3.bias"] = bf16_randn(gen, (d,), 0.02, device=device)
        w[b + "ffn.0.weight"] = bf16_randn(gen, (f, d), s, device=device)
        w[b + "ffn.0.bias"] = bf16_randn(gen, (f,), 0.02, device=device)
        w[b + "ffn.2.weight"] = bf16_randn(gen, (d, f), 1 / math.sqrt(f), device=device)
        w[b + "ffn.2.bias"] = bf16_randn(gen, (d,), 0.02, device=device)
    return w


def sinusoid(dim, t):
    half = dim // 2
    pos = t.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    a = torch.outer(pos, freqs)
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


def rope_angles(head_dim, device):
    """per pair: (section, angle per position) for the 3 sections of a head (frame, height, width)"""
    k = head_dim // 6
    dims = [head_dim - 4 * k, 2 * k, 2 * k]
    tabs = []
    for dsec in dims:
        inv = 1.0 / torch.pow(10000.0, torch.arange(0, dsec, 2, dtype=torch.float64, device=device) / dsec)
        tabs.append(torch.outer(torch.arange(1024, dtype=torch.float64, device=device), inv))
    return tabs  # [1024, pairs_s] each


def apply_rope(x, tabs, f0, f, h, w):
    """x [L, H, D] float32, tokens ordered (frame, row, col); complex pairs are adjacent values"""
    L, H, D = x.shape
    fa = tabs[0][f0 : f0 + f]
    ha = tabs[1][:h]
    wa = tabs[2][:w]
    ang = torch.cat(
        [
            fa[:, None, None, :].expand(f, h, w, -1),
            ha[None, :, None, :].expand(f, h, w, -1),
            wa[None, None, :, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(L, 1, D // 2)
    xc = torch.view_as_complex(x.to(torch.float64).reshape(L, H, D // 2, 2))
    y = xc * torch.polar(torch.ones_like(ang), ang)
    return torch.view_as_real(y).reshape(L, H, D).to(x.dtype)


def rms(x, w):
    """RMS norm with float32 statistics, in x's dtype (float32 everywhere in the correctness runs)"""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype) * w


def ln(x, w=None, b=None):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, EPS)


def attend(q, k, v):
    """q [Lq, H, D], k/v [Lk, H, D] -> [Lq, H, D]"""
    o = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None]
    )
    return o[0].transpose(0, 1)


class CausalWan:
    def __init__(self, p, w, local_attn_size=-1, sink_size=0, frame_tokens=None, max_frames=21):
        self.p, self.w = p, w
        self.d, self.h = p["dim"], p["heads"]
        self.hd = self.d // self.h
        self.tabs = rope_angles(self.hd, w["head.modulation"].device)
        self.local, self.sink = local_attn_size, sink_size
        self.ft = frame_tokens
        self.max_attn = (21 if local_attn_size == -1 else local_attn_size) * frame_tokens
        cap = (max_frames if local_attn_size == -1 else local_attn_size) * frame_tokens
        dev = w["head.modulation"].device
        dt = w["head.modulation"].dtype
        self.k = [torch.zeros(cap, self.h, self.hd, device=dev, dtype=dt) for _ in range(p["layers"])]
        self.v = [torch.zeros(cap, self.h, self.hd, device=dev, dtype=dt) for _ in range(p["layers"])]
        self.global_end = 0
        self.local_end = 0

    def lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def text(self, ctx):
        c = self.lin(torch.nn.functional.gelu(self.lin(ctx, "text_embedding.0"), approximate="tanh"), "text_embedding.2")
        out = []
        for i in range(self.p["layers"]):
            b = f"blocks.{i}.cross_attn."
            k = rms(self.lin(c, b + "k"), self.w[b + "norm_k.weight"]).reshape(-1, self.h, self.hd)
            v = self.lin(c, b + "v").reshape(-1, self.h, self.hd)
            out.append((k, v))
        return out

    def forward(self, x, t, start_frame, text_kv):
        """x [C, F, H, W] float32, t [F] timesteps -> flow [C, F, H, W]"""
        w, d = self.w, self.d
        _, f, hh, ww = x.shape
        gh, gw = hh // 2, ww // 2
        tok = x.reshape(C, f, gh, 2, gw, 2).permute(1, 2, 4, 0, 3, 5).reshape(f * gh * gw, C * 4)
        pw = w["patch_embedding.weight"].reshape(d, C * 4)
        h = tok @ pw.T + w["patch_embedding.bias"]  # [L, D]
        L = h.shape[0]
        T = gh * gw
        e = sinusoid(self.p["freq"], t).to(w["head.modulation"].dtype)
        e = self.lin(torch.nn.functional.silu(self.lin(e, "time_embedding.0")), "time_embedding.2")  # [F, D]
        e0 = self.lin(torch.nn.functional.silu(e), "time_projection.1").reshape(f, 6, d)
        per_frame = lambda r: r.repeat_interleave(T, dim=0)  # [F, D] -> [L, D]

        cur_start = start_frame * self.ft
        cur_end = cur_start + L
        sink = self.sink * self.ft
        cap = self.k[0].shape[0]
        evict = self.local != -1 and cur_end > self.global_end and L + self.local_end > cap
        if evict:
            n_ev = L + self.local_end - cap
            n_roll = self.local_end - n_ev - sink
            local_end = self.local_end + cur_end - self.global_end - n_ev
        else:
            local_end = self.local_end + cur_end - self.global_end
        local_start = local_end - L

        for i in range(self.p["layers"]):
            b = f"blocks.{i}."
            m = w[b + "modulation"][0] + e0  # [F, 6, D]
            sh_a, sc_a, g_a, sh_f, sc_f, g_f = [per_frame(m[:, j]) for j in range(6)]
            y = ln(h) * (1 + sc_a) + sh_a
            q = rms(self.lin(y, b + "self_attn.q"), w[b + "self_attn.norm_q.weight"]).reshape(L, self.h, self.hd)
            k = rms(self.lin(y, b + "self_attn.k"), w[b + "self_attn.norm_k.weight"]).reshape(L, self.h, self.hd)
            v = self.lin(y, b + "self_attn.v").reshape(L, self.h, self.hd)
            q = apply_rope(q, self.tabs, start_frame, f, gh, gw)
            k = apply_rope(k, self.tabs, start_frame, f, gh, gw)
            kc, vc = self.k[i], self.v[i]
            if evict:
                kc[sink : sink + n_roll] = kc[sink + n_ev : sink + n_ev + n_roll].clone()
                vc[sink : sink + n_roll] = vc[sink + n_ev : sink + n_ev + n_roll].clone()
            kc[local_start:local_end] = k
            vc[local_start:local_end] = v
            lo = max(0, local_end - self.max_attn)
            o = attend(q, kc[lo:local_end], vc[lo:local_end]).reshape(L, d)
            h = h + self.lin(o, b + "self_attn.o") * g_a
            y = ln(h, w[b + "norm3.weight"], w[b + "norm3.bias"])
            q = rms(self.lin(y, b + "cross_attn.q"), w[b + "cross_attn.norm_q.weight"]).reshape(L, self.h, self.hd)
            kt, vt = text_kv[i]
            h = h + self.lin(attend(q, kt, vt).reshape(L, d), b + "cross_attn.o")
            y = ln(h) * (1 + sc_f) + sh_f
            y = self.lin(torch.nn.functional.gelu(self.lin(y, b + "ffn.0"), approximate="tanh"), b + "ffn.2")
            h = h + y * g_f
        self.global_end = cur_end
        self.local_end = local_end
        hm = w["head.modulation"][0]  # [2, D]
        y = ln(h) * (1 + per_frame(hm[1] + e)) + per_frame(hm[0] + e)
        out = self.lin(y, "head.head")  # [L, 4C] ordered (kh, kw, c)
        return out.reshape(f, gh, gw, 2, 2, C).permute(5, 0, 1, 3, 2, 4).reshape(C, f, hh, ww)


class BidirWan(CausalWan):
    """Wan's bidirectional DiT over the same weights (the teacher / critic and the bidirectional
    samplers' model): one timestep for the whole video (time embedding computed once and broadcast to
    every token), full attention over all tokens of the video with no cache, RoPE from frame 0."""

    def __init__(self, p, w):
        self.p, self.w = p, w
        self.d, self.h = p["dim"], p["heads"]
        self.hd = self.d // self.h
        self.tabs = rope_angles(self.hd, w["head.modulation"].device)

    def forward(self, x, t, text_kv):
        """x [C, F, H, W], t a number -> flow [C, F, H, W]"""
        w, d, nh, hd = self.w, self.d, self.h, self.hd
        dt = w["head.modulation"].dtype
        _, f, hh, ww = x.shape
        gh, gw = hh // 2, ww // 2
        tok = x.reshape(C, f, gh, 2, gw, 2).permute(1, 2, 4, 0, 3, 5).reshape(f * gh * gw, C * 4)
        h = tok @ w["patch_embedding.weight"].reshape(d, C * 4).T + w["patch_embedding.bias"]
        L = h.shape[0]
        tt = torch.tensor([float(t)], dtype=torch.float32, device=x.device)
        e = self.lin(torch.nn.functional.silu(self.lin(sinusoid(self.p["freq"], tt).to(dt), "time_embedding.0")), "time_embedding.2")
        e0 = self.lin(torch.nn.functional.silu(e), "time_projection.1").reshape(6, d)  # one row set, all tokens
        for i in range(self.p["layers"]):
            b = f"blocks.{i}."
            sh_a, sc_a, g_a, sh_f, sc_f, g_f = (w[b + "modulation"][0] + e0).unbind(0)
            y = ln(h) * (1 + sc_a) + sh_a
            qkv = [self.lin(y, b + "self_attn." + n) for n in "qkv"]
            q = apply_rope(rms(qkv[0], w[b + "self_attn.norm_q.weight"]).reshape(L, nh, hd), self.tabs, 0, f, gh, gw)
            k = apply_rope(rms(qkv[1], w[b + "self_attn.norm_k.weight"]).reshape(L, nh, hd), self.tabs, 0, f, gh, gw)
            h = h + self.lin(attend(q, k, qkv[2].reshape(L, nh, hd)).reshape(L, d), b + "self_attn.o") * g_a
            y = ln(h, w[b + "norm3.weight"], w[b + "norm3.bias"])
            qc = rms(self.lin(y, b + "cross_attn.q"), w[b + "cross_attn.norm_q.weight"]).reshape(L, nh, hd)
            h = h + self.lin(attend(qc, *text_kv[i]).reshape(L, d), b + "cross_attn.o")
            y = ln(h) * (1 + sc_f) + sh_f
            h = h + self.lin(torch.nn.functional.gelu(self.lin(y, b + "ffn.0"), approximate="tanh"), b + "ffn.2") * g_f
        hm = w["head.modulation"][0] + e  # [2, D]
        out = self.lin(ln(h) * (1 + hm[1]) + hm[0], "head.head")
        return out.reshape(f, gh, gw, 2, 2, C).permute(5, 0, 1, 3, 2, 4).reshape(C, f, hh, ww)


def bidirectional_main(a, p, dev, gen, w, ctx):
    """--bidirectional: one forward of the whole video per timestep (fresh noise each), the flows as
    goldens; with --time N also the wall time of one forward in float32 and in bf16 (CUDA events,
    median of N after a warm-up), written into the JSON."""
    model = BidirWan(p, w)
    timesteps = [float(v) for v in a.timesteps.split(",")]
    tensors = {"context": ctx.to(torch.bfloat16).cpu()}
    passes = []
    with torch.no_grad():
        text_kv = model.text(ctx)
        for n, t in enumerate(timesteps):
            x = torch.randn(C, a.frames, p["lat_h"], p["lat_w"], generator=gen, device=dev)
            flow = model.forward(x, t, text_kv)
            tensors[f"pass{n}.x"] = x.cpu().contiguous()
            tensors[f"pass{n}.flow"] = flow.cpu().contiguous()
            passes.append({"timestep": t})
    save_file(tensors, os.path.join(a.out, a.name + ".safetensors"))
    meta = dict(preset=a.preset, frames=a.frames, latent_height=p["lat_h"], latent_width=p["lat_w"], passes=passes)
    if a.time and dev.startswith("cuda"):
        meta["torch_ms"] = {}
        for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            m = BidirWan(p, {k: v.to(dt) for k, v in w.items()})
            x = torch.randn(C, a.frames, p["lat_h"], p["lat_w"], generator=gen, device=dev).to(dt)
            with torch.no_grad():
                kv = m.text(ctx.to(dt))
                m.forward(x, timesteps[0], kv)
                ms = []
                for _ in range(a.time):
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    m.forward(x, timesteps[0], kv)
                    e1.record()
                    torch.cuda.synchronize()
                    ms.append(e0.elapsed_time(e1))
            meta["torch_ms"][name] = sorted(ms)[len(ms) // 2]
            del m, kv
            torch.cuda.empty_cache()
        meta["torch_device"] = torch.cuda.get_device_name()
    with open(os.path.join(a.out, a.name + ".json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"wrote {len(passes)} bidirectional passes of {a.preset} ({a.frames} frames) to {a.out}: {meta.get('torch_ms')}")


def time_causal(a, p, dev, gen, w, ctx):
    """--time-causal N: PyTorch eager bf16 milliseconds per chunk of the few-step rollout (each chunk
    4 denoising passes at the warped timesteps + the clean cache pass, on a fresh KV cache per run);
    per chunk the median over N runs, after a warm-up chunk."""
    bf = torch.bfloat16
    wb = {k: v.to(bf) for k, v in w.items()}
    del w
    fpc = a.frames_per_chunk
    ft = (p["lat_h"] // 2) * (p["lat_w"] // 2)
    total = a.chunks * fpc
    sig = shifted_sigmas()
    ts = [float(1000.0 * sig[1000 - s]) if s > 0 else 0.0 for s in [1000, 750, 500, 250, 0]]
    x = torch.randn(C, fpc, p["lat_h"], p["lat_w"], generator=gen, device=dev).to(bf)

    def rollout(chunks):
        model = CausalWan(p, wb, a.local_attn_size, a.sink_size, ft, max_frames=max(21, total))
        text_kv = model.text(ctx.to(bf))
        out = []
        for c in range(chunks):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for t in ts:
                model.forward(x, torch.full((fpc,), t, device=dev), c * fpc, text_kv)
            e1.record()
            torch.cuda.synchronize()
            out.append(e0.elapsed_time(e1))
        del model, text_kv
        torch.cuda.empty_cache()
        return out

    with torch.no_grad():
        rollout(1)
        runs = [rollout(a.chunks) for _ in range(a.time_causal)]
    chunk_ms = [sorted(r[i] for r in runs)[len(runs) // 2] for i in range(a.chunks)]
    meta = dict(
        preset=a.preset,
        implementation="PyTorch eager bf16 (test/reference/wan_dit.py CausalWan, SDPA attention, float64 RoPE)",
        torch=torch.__version__,
        torch_device=torch.cuda.get_device_name(),
        chunks=a.chunks,
        passes_per_chunk=len(ts),
        runs=runs,
        chunk_ms=chunk_ms,
        total_ms=sum(chunk_ms),
        median_chunk_ms=sorted(chunk_ms)[len(chunk_ms) // 2],
    )
    with open(os.path.join(a.out, a.name + ".json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"PyTorch eager bf16, {a.chunks} chunks: {meta['total_ms']:.0f} ms, per chunk {[round(v) for v in chunk_ms]}")


def shifted_sigmas(shift=5.0, steps=1000):
    s = torch.linspace(1.0, 0.0, steps + 1)[:-1]
    return shift * s / (1 + (shift - 1) * s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=PRESETS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--chunks", type=int, default=3)
    ap.add_argument("--frames-per-chunk", type=int, default=3)
    ap.add_argument("--local-attn-size", type=int, default=-1)
    ap.add_argument("--sink-size", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt-tokens", type=int, default=None, help="non-zero context rows (rest zero-padded)")
    ap.add_argument("--name", default="rollout", help="file stem of the rollout (weights.safetensors is shared)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bidirectional", action="store_true", help="goldens of the bidirectional DiT instead")
    ap.add_argument("--frames", type=int, default=21, help="--bidirectional: latent frames of the video")
    ap.add_argument("--timesteps", default="1000,625,0", help="--bidirectional: one pass per timestep")
    ap.add_argument("--time", type=int, default=0, help="--bidirectional: time N forwards (CUDA)")
    ap.add_argument("--weights", default=None, help="read the weights from this safetensors file instead")
    ap.add_argument("--time-causal", type=int, default=0, help="time N PyTorch eager bf16 rollouts (CUDA) instead")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    p = PRESETS[a.preset]
    dev = a.device
    gen = torch.Generator(device=dev).manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    if a.weights:
        from safetensors.torch import load_file

        w = {k: v.float().to(dev) for k, v in load_file(a.weights).items()}
    elif a.time_causal:
        w = make_weights(p, gen, dev)  # the values do not change the time; nothing is written
    else:
        w = make_weights(p, gen, dev)
        save_file({k: v.to(torch.bfloat16).contiguous().cpu() for k, v in w.items()}, os.path.join(a.out, "weights.safetensors"))
    n_tok = a.prompt_tokens or max(1, p["text_len"] // 4)
    ctx = torch.zeros(p["text_len"], p["text_dim"], device=dev)
    ctx[:n_tok] = bf16_randn(gen, (n_tok, p["text_dim"]), 0.5, device=dev)
    if a.bidirectional:
        return bidirectional_main(a, p, dev, gen, w, ctx)
    if a.time_causal:
        return time_causal(a, p, dev, gen, w, ctx)
    fpc = a.frames_per_chunk
    ft = (p["lat_h"] // 2) * (p["lat_w"] // 2)
    total = a.chunks * fpc
    model = CausalWan(p, w, a.local_attn_size, a.sink_size, ft, max_frames=max(21, total))
    with torch.no_grad():
        text_kv = model.text(ctx)
        sig = shifted_sigmas()
        steps = [1000, 750, 500, 250]
        tensors = {"context": ctx.to(torch.bfloat16).cpu()}
        passes = []
        for c in range(a.chunks):
            start = c * fpc
            x = torch.randn(C, fpc, p["lat_h"], p["lat_w"], generator=gen, device=dev)
            for si, s in enumerate(steps + [0]):
                t = float(1000.0 * sig[1000 - s]) if s > 0 else 0.0
                tt = torch.full((fpc,), t, device=dev)
                flow = model.forward(x, tt, start, text_kv)
                n = len(passes)
                tensors[f"pass{n}.x"] = x.cpu().contiguous()
                tensors[f"pass{n}.flow"] = flow.cpu().contiguous()
                passes.append({"chunk": c, "start_frame": start, "timestep": t})
                if si < len(steps):
                    sigma = t / 1000.0
                    x0 = x - sigma * flow
                    if si + 1 < len(steps):
                        s2 = float(sig[1000 - steps[si + 1]])
                        x = (1 - s2) * x0 + s2 * torch.randn(x.shape, generator=gen, device=dev)
                    else:
                        x = x0  # the clean pass at t = 0 writes the cache
        save_file(tensors, os.path.join(a.out, a.name + ".safetensors"))
    meta = dict(
        preset=a.preset,
        frames_per_chunk=fpc,
        latent_height=p["lat_h"],
        latent_width=p["lat_w"],
        local_attn_size=a.local_attn_size,
        sink_size=a.sink_size,
        passes=passes,
    )
    with open(os.path.join(a.out, a.name + ".json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"wrote {len(passes)} passes of {a.preset} to {a.out}")


if __name__ == "__main__":
    main()
