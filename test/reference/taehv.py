"""The project's own float32 PyTorch reference of the TAEHV decoder (taew2_1.pth layout), streaming.

Written from the semantics in the project's notes (not copied from any implementation). The decoder is
a sequence indexed as the checkpoint's `decoder.{i}` keys:

  0 Clamp tanh(x / 3) * 3, 1 conv3x3 (latent -> nf0) + ReLU, 3-5 MemBlock(nf0), 6 nearest x2,
  7 TGrow(nf0, 1), 8 conv3x3 (nf0 -> nf1, no bias), 9-11 MemBlock(nf1), 12 x2, 13 TGrow(nf1, 2),
  14 conv (nf1 -> nf2, no bias), 15-17 MemBlock(nf2), 18 x2, 19 TGrow(nf2, 2), 20 conv (nf2 -> nf3,
  no bias), 21 ReLU, 22 conv3x3 (nf3 -> 3).

MemBlock(n): relu(conv.4(relu(conv.2(relu(conv.0(cat[x, past]))))) + x), past = the block's input
at the previous time step (zeros at the first), kept between chunks. TGrow(n, s): a 1x1 convolution
n -> n s (no bias) whose channel group j becomes frame j of the s frames it makes of one frame; a
checkpoint weight with more output channels is cut to its last n s. Latents are the DiT's (no mean /
std); the video is frames 3.. of the output (the first 3 are dropped), as 2 x - 1 clamped to [-1, 1].

Writes random weights (bf16-representable, the last convolution scaled so the video spans [-1, 1])
under the checkpoint's names as safetensors, random latents and the decoded video.

  python3 test/reference/taehv.py --preset tiny --out DIR [--frames 3] [--height 4 --width 6]
  python3 test/reference/taehv.py --preset taew2_1 --out DIR --frames 21 --height 60 --width 104 --time
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

PRESETS = {"tiny": [32, 16, 8, 8], "taew2_1": [256, 128, 64, 64]}
LATENT = 16
STRIDES = [1, 2, 2]
TRIM = 3


def stages():
    """(MemBlock indices, TGrow index, conv index) of the three stages"""
    return [([3 + 6 * s, 4 + 6 * s, 5 + 6 * s], 7 + 6 * s, 8 + 6 * s) for s in range(3)]


def bf16(x):
    return x.to(torch.bfloat16).float()


def rnd(gen, shape, std, device):
    return bf16(torch.randn(shape, generator=gen, device=device) * std)


def make_weights(nf, gen, device):
    """He-style scales (ReLU after most convolutions), small biases; the skip-branch conv damped"""
    w = {}

    def conv(name, cout, cin, gain, bias=True, k=3):
        w[name + ".weight"] = rnd(gen, (cout, cin, k, k), gain / math.sqrt(cin * k * k), device)
        if bias:
            w[name + ".bias"] = rnd(gen, (cout,), 0.02, device)

    conv("decoder.1", nf[0], LATENT, math.sqrt(2))
    for k, (mems, tgrow, c) in enumerate(stages()):
        n = nf[k]
        for m in mems:
            conv(f"decoder.{m}.conv.0", n, 2 * n, math.sqrt(2))
            conv(f"decoder.{m}.conv.2", n, n, math.sqrt(2))
            conv(f"decoder.{m}.conv.4", n, n, 0.5)
        # decoder.7 is written with 2x the output channels it needs: the decoder takes the last ones
        rows = n * (2 if k == 0 else STRIDES[k])
        w[f"decoder.{tgrow}.conv.weight"] = rnd(gen, (rows, n, 1, 1), 1 / math.sqrt(n), device)
        conv(f"decoder.{c}", nf[k + 1], n, 1.0, bias=False)
    conv("decoder.22", 3, nf[3], 1.0)
    # an encoder tensor, which the decoder must ignore
    w["encoder.0.weight"] = rnd(gen, (64, 3, 3, 3), 0.1, device)
    return w


class Taehv:
    """Decodes chunks of latent frames in order, each MemBlock keeping its last input frame."""

    def __init__(self, w, nf):
        self.w, self.nf, self.mem = w, nf, {}

    def conv(self, name, x, k=3):
        return F.conv2d(x, self.w[name + ".weight"], self.w.get(name + ".bias"), padding=k // 2)

    def memblock(self, i, x):
        """x [T, n, H, W], the block's inputs at T consecutive time steps"""
        prev = self.mem.get(i)
        if prev is None:
            prev = torch.zeros_like(x[:1])
        past = torch.cat([prev, x[:-1]])
        self.mem[i] = x[-1:].clone()
        h = F.relu(self.conv(f"decoder.{i}.conv.0", torch.cat([x, past], 1)))
        h = F.relu(self.conv(f"decoder.{i}.conv.2", h))
        h = self.conv(f"decoder.{i}.conv.4", h)
        return F.relu(h + x)

    def tgrow(self, i, x, s):
        t, n, hh, ww = x.shape
        wt = self.w[f"decoder.{i}.conv.weight"][-n * s :]
        return F.conv2d(x, wt).reshape(t * s, n, hh, ww)  # frame t s + j = channel group j of frame t

    def chunk(self, z):
        """z [T, latent, h, w] -> frames [4 T, 3, 8h, 8w] (about [0, 1])"""
        x = torch.tanh(z / 3) * 3
        x = F.relu(self.conv("decoder.1", x))
        for k, (mems, tgrow, c) in enumerate(stages()):
            for m in mems:
                x = self.memblock(m, x)
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = self.tgrow(tgrow, x, STRIDES[k])
            x = self.conv(f"decoder.{c}", x)
        return self.conv("decoder.22", F.relu(x))


def decode_frames(w, nf, z, chunk):
    """z [latent, F, h, w] -> all 4 F frames [4 F, 3, 8h, 8w], decoding `chunk` latent frames at a time"""
    dec = Taehv(w, nf)
    zt = z.permute(1, 0, 2, 3)
    return torch.cat([dec.chunk(zt[f : f + chunk]) for f in range(0, zt.shape[0], chunk)])


def decode(w, nf, z, chunk=1):
    """z [latent, F, h, w] -> video [3, 1 + 4 (F - 1), 8h, 8w] in [-1, 1]"""
    x = decode_frames(w, nf, z, chunk)[TRIM:]
    return (x * 2 - 1).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()


def calibrate(w, nf, z):
    """scales the last convolution so the video is about 0.5 +- 0.25 before 2 x - 1 (few clamped)"""
    name = "decoder.22"
    with torch.no_grad():
        b = w[name + ".bias"]
        w[name + ".bias"] = torch.zeros_like(b)
        x = decode_frames(w, nf, z, 1)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        scale = 0.25 / std
        w[name + ".weight"] = bf16(w[name + ".weight"] * scale.view(3, 1, 1, 1))
        w[name + ".bias"] = bf16(0.5 - mean * scale)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=PRESETS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=3, help="latent frames")
    ap.add_argument("--height", type=int, default=4, help="latent height")
    ap.add_argument("--width", type=int, default=6, help="latent width")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time", action="store_true", help="also time the decode in float16 and bfloat16 (CUDA)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    nf = PRESETS[a.preset]
    gen = torch.Generator(device=a.device).manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    w = make_weights(nf, gen, a.device)
    z = torch.randn(LATENT, a.frames, a.height, a.width, generator=gen, device=a.device)
    calibrate(w, nf, z)
    save_file({k: v.to(torch.bfloat16).contiguous().cpu() for k, v in w.items()}, os.path.join(a.out, "taehv.safetensors"))
    with torch.no_grad():
        video = decode(w, nf, z)
    save_file({"latent": z.cpu().contiguous(), "video": video.cpu().contiguous()}, os.path.join(a.out, "decode.safetensors"))
    inside = ((video > -1) & (video < 1)).float().mean().item()
    meta = dict(preset=a.preset, nf=nf, frames=a.frames, height=a.height, width=a.width,
                video_shape=list(video.shape), video_std=video.std().item(), unclamped_fraction=inside)
    if a.time and a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
        # chunks of 1 latent frame (close to the demo's frame-by-frame mode), 3 (the pipeline's
        # chunks), all (the reference's parallel mode: memory grows with the video)
        for dtype in (torch.float16, torch.bfloat16):
            wd = {k: v.to(dtype) for k, v in w.items()}
            zd = z.to(dtype)
            for chunk in (1, 3, a.frames):
                mode = "whole" if chunk == a.frames else f"chunk{chunk}"
                tag = f"{str(dtype).split('.')[-1]}_{mode}"
                with torch.no_grad():
                    decode(wd, nf, zd, chunk)
                    torch.cuda.synchronize()
                    base = torch.cuda.memory_allocated()
                    torch.cuda.reset_peak_memory_stats()
                    ms = []
                    for _ in range(3):
                        ev[0].record()
                        v = decode(wd, nf, zd, chunk)
                        ev[1].record()
                        torch.cuda.synchronize()
                        ms.append(ev[0].elapsed_time(ev[1]))
                        del v
                meta[f"torch_ms_{tag}"] = sorted(ms)[1]
                meta[f"torch_peak_bytes_{tag}"] = torch.cuda.max_memory_allocated() - base
        meta["torch"] = torch.__version__
        meta["gpu"] = torch.cuda.get_device_name()
    with open(os.path.join(a.out, "decode.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
