"""The project's own float32 PyTorch reference of Wan2.1's UMT5 text encoder.

Written from the encoder's semantics (not copied from any implementation): token embedding; per
block an RMS norm (no mean, no bias, eps 1e-6), self-attention without score scaling whose bias is
the block's own relative-position embedding (bidirectional buckets, max distance 128) plus the
padding mask (masked keys get float32's lowest value), an output projection, an RMS norm and the
gated-GELU FFN fc2(fc1(h) * gelu_tanh(gate(h))), residuals around both; a final RMS norm; then the
rows past each prompt's length zeroed, as Self-Forcing's text-encoder wrapper does.

It runs every text_len position with the mask, as the reference encoder does (sfc computes only
the prompt's tokens). Writes random bf16-representable weights under the checkpoint's parameter
names (weights.safetensors), and per case the padded ids, the mask and the [text_len, dim] output
(cases.safetensors, cases.json).

  python3 test/reference/umt5.py --preset tiny --out DIR [--lengths 11,16,1] [--text-len N] [--seed 0]
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file

PRESETS = {
    # the sizes of configs/models/*.yaml's text_encoder sections (tiny: the project's tiny preset)
    "tiny": dict(vocab=1024, dim=32, dim_attn=32, ffn=64, heads=2, layers=2, buckets=32, text_len=16),
    "xxl": dict(vocab=256384, dim=4096, dim_attn=4096, ffn=10240, heads=64, layers=24, buckets=32, text_len=512),
}
DEFAULT_LENGTHS = {"tiny": "11,16,1", "xxl": "77,512"}
EPS = 1e-6
MAX_DISTANCE = 128


def bf16_randn(gen, shape, std, mean=0.0, device="cpu"):
    w = torch.randn(shape, generator=gen, device=device) * std + mean
    return w.to(torch.bfloat16).float()


def make_weights(p, gen, device):
    """random weights at T5's initialisation scales (q: (d_model d_kv)^-1/2, so unscaled scores have std ~1)"""
    d, a, f = p["dim"], p["dim_attn"], p["ffn"]
    hd = a // p["heads"]
    r = lambda shape, std, mean=0.0: bf16_randn(gen, shape, std, mean, device)
    w = {"token_embedding.weight": r((p["vocab"], d), 1.0)}
    for i in range(p["layers"]):
        b = f"blocks.{i}."
        w[b + "norm1.weight"] = r((d,), 0.1, 1.0)
        w[b + "attn.q.weight"] = r((a, d), 1.0 / math.sqrt(hd * d))  # T5's own init scale: unscaled scores of std ~1
        w[b + "attn.k.weight"] = r((a, d), 1.0 / math.sqrt(d))
        w[b + "attn.v.weight"] = r((a, d), 1.0 / math.sqrt(d))
        w[b + "attn.o.weight"] = r((d, a), 1.0 / math.sqrt(a))
        w[b + "norm2.weight"] = r((d,), 0.1, 1.0)
        w[b + "ffn.gate.0.weight"] = r((f, d), 1.0 / math.sqrt(d))
        w[b + "ffn.fc1.weight"] = r((f, d), 1.0 / math.sqrt(d))
        w[b + "ffn.fc2.weight"] = r((d, f), 1.0 / math.sqrt(f))
        w[b + "pos_embedding.embedding.weight"] = r((p["buckets"], p["heads"]), 1.0)
    w["norm.weight"] = r((d,), 0.1, 1.0)
    return w


def rms_norm(x, weight):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * weight


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def buckets(n, num_buckets, device):
    """[n, n] bucket of key j for query i: half the buckets per side, exact below a quarter, then log-spaced"""
    off = torch.arange(n, device=device)[None, :] - torch.arange(n, device=device)[:, None]
    half = num_buckets // 2
    side = (off > 0).long() * half
    dist = off.abs()
    exact = half // 2
    # float32 arithmetic as the encoder does it; dist < exact never uses this value
    far = exact + (torch.log(dist.float() / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)).long()
    far = torch.clamp(far, max=half - 1)
    return side + torch.where(dist < exact, dist, far)


def encode(p, w, ids, mask):
    """ids, mask [T] -> [T, dim]: the full padded sequence, padding keys masked, padded rows zeroed"""
    T, h = ids.shape[0], p["heads"]
    hd = p["dim_attn"] // h
    x = w["token_embedding.weight"][ids]
    bk = buckets(T, p["buckets"], ids.device)
    key_mask = (mask == 0)[None, None, :]  # [1, 1, T] over (head, query, key)
    for i in range(p["layers"]):
        b = f"blocks.{i}."
        y = rms_norm(x, w[b + "norm1.weight"])
        q = (y @ w[b + "attn.q.weight"].T).view(T, h, hd).transpose(0, 1)
        k = (y @ w[b + "attn.k.weight"].T).view(T, h, hd).transpose(0, 1)
        v = (y @ w[b + "attn.v.weight"].T).view(T, h, hd).transpose(0, 1)
        bias = w[b + "pos_embedding.embedding.weight"][bk].permute(2, 0, 1)  # [h, T, T]
        bias = bias.masked_fill(key_mask, torch.finfo(torch.float32).min)
        att = torch.softmax(q @ k.transpose(1, 2) + bias, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, p["dim_attn"])
        x = x + o @ w[b + "attn.o.weight"].T
        y = rms_norm(x, w[b + "norm2.weight"])
        g = gelu_tanh(y @ w[b + "ffn.gate.0.weight"].T)
        x = x + ((y @ w[b + "ffn.fc1.weight"].T) * g) @ w[b + "ffn.fc2.weight"].T
    x = rms_norm(x, w["norm.weight"])
    n = int(mask.sum())
    x[n:] = 0.0
    return x


def encode_bf16(p, w, ids, mask):
    """the same encoder as PyTorch runs it in bf16 (Wan keeps the T5 in bf16): weights and activations
    bf16, RMS statistics in float32; for comparing sfc's bf16 error with PyTorch's own"""
    wb = {k: v.to(torch.bfloat16) for k, v in w.items()}
    T, h = ids.shape[0], p["heads"]
    hd = p["dim_attn"] // h
    bf = torch.bfloat16
    norm = lambda x, g: (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)).to(bf) * g
    x = wb["token_embedding.weight"][ids]
    bk = buckets(T, p["buckets"], ids.device)
    key_mask = (mask == 0)[None, None, :]
    for i in range(p["layers"]):
        b = f"blocks.{i}."
        y = norm(x, wb[b + "norm1.weight"])
        q = (y @ wb[b + "attn.q.weight"].T).view(T, h, hd).transpose(0, 1)
        k = (y @ wb[b + "attn.k.weight"].T).view(T, h, hd).transpose(0, 1)
        v = (y @ wb[b + "attn.v.weight"].T).view(T, h, hd).transpose(0, 1)
        bias = wb[b + "pos_embedding.embedding.weight"][bk].permute(2, 0, 1)
        bias = bias.masked_fill(key_mask, torch.finfo(bf).min)
        att = torch.softmax((q @ k.transpose(1, 2) + bias).float(), dim=-1).to(bf)
        o = (att @ v).transpose(0, 1).reshape(T, p["dim_attn"])
        x = x + o @ wb[b + "attn.o.weight"].T
        y = norm(x, wb[b + "norm2.weight"])
        g = gelu_tanh((y @ wb[b + "ffn.gate.0.weight"].T).float()).to(bf)
        x = x + ((y @ wb[b + "ffn.fc1.weight"].T) * g) @ wb[b + "ffn.fc2.weight"].T
    x = norm(x, wb["norm.weight"]).float()
    x[int(mask.sum()):] = 0.0
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=PRESETS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default=None, help="comma-separated prompt lengths, one case each (<= text_len)")
    ap.add_argument("--text-len", type=int, default=None, help="override the preset's text_len (padded length)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    p = dict(PRESETS[a.preset])
    if a.text_len:
        p["text_len"] = a.text_len
    T = p["text_len"]
    lengths = [int(s) for s in (a.lengths or DEFAULT_LENGTHS[a.preset]).split(",")]
    if any(n < 1 or n > T for n in lengths):
        raise SystemExit(f"prompt lengths must be in [1, {T}], got {lengths}")
    dev = a.device
    gen = torch.Generator(device=dev).manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    w = make_weights(p, gen, dev)
    save_file(
        {k: v.to(torch.bfloat16).contiguous().cpu() for k, v in w.items()},
        os.path.join(a.out, "weights.safetensors"),
    )
    tensors = {}
    torch_bf16_err = []
    with torch.no_grad():
        for i, n in enumerate(lengths):
            ids = torch.zeros(T, dtype=torch.long, device=dev)  # 0 is UMT5's <pad>
            ids[:n] = torch.randint(1, p["vocab"], (n,), generator=gen, device=dev)
            mask = torch.zeros(T, dtype=torch.long, device=dev)
            mask[:n] = 1
            out = encode(p, w, ids, mask)
            tensors[f"case{i}.ids"] = ids.to(torch.int32).cpu()
            tensors[f"case{i}.mask"] = mask.to(torch.int32).cpu()
            tensors[f"case{i}.out"] = out.float().cpu().contiguous()
            ob = encode_bf16(p, w, ids, mask)
            torch_bf16_err.append(float((ob - out).norm() / out.norm()))
    save_file(tensors, os.path.join(a.out, "cases.safetensors"))
    with open(os.path.join(a.out, "cases.json"), "w") as fh:
        shape = dict(
            vocab_size=p["vocab"],
            dim=p["dim"],
            dim_attn=p["dim_attn"],
            ffn_dim=p["ffn"],
            num_heads=p["heads"],
            num_layers=p["layers"],
            num_buckets=p["buckets"],
            text_len=T,
        )
        json.dump(
            dict(preset=a.preset, shape=shape, text_len=T, dim=p["dim"], lengths=lengths, torch_bf16_rel_err=torch_bf16_err),
            fh,
            indent=1,
        )
    print(f"wrote {len(lengths)} cases of {a.preset} (prompt lengths {lengths}) to {a.out}")


if __name__ == "__main__":
    main()
