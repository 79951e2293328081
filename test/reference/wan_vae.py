"""The project's own float32 PyTorch reference of the Wan2.1 VAE decoder, streaming.

Written from the semantics in the project's notes (not copied from any implementation). Every
causal convolution with a temporal kernel of 3 sees its input as one stream with two zero frames
before the start, whatever the chunking: it keeps the last two input frames between calls. The
temporal upsampling convolution of an `upsample3d` block skips the very first frame (which passes
through un-doubled) and sees the stream from the second frame on. So decoding one latent frame at
a time gives 1 video frame for the first latent frame and 4 for each later one.

The encoder mirrors it: the video is fed as its first frame, then groups of 4 frames; a causal
convolution sees the same zero-started stream; `downsample2d` zero-pads one row and column at the
bottom/right and runs a stride-2 3x3 convolution; `downsample3d` does that, then (from the second
frame on) a stride-2 temporal convolution over [the previous group's last frame, the new frames],
the very first frame passing through. So 1 + 4k frames give 1 + k latent frames: the mean of the
posterior after the 1x1x1 `conv1`, normalised per channel, (mu - mean) / std.

Writes random weights (bf16-representable) under the checkpoint's parameter names as safetensors,
random latents, and the decoded video (clamped to [-1, 1]), decoding latent frame by latent frame;
with --encode, a random video in [-1, 1] and its latents instead (encoder + decoder weights).

  python3 test/reference/wan_vae.py --preset tiny --out DIR [--frames 3] [--height 8 --width 12]
  python3 test/reference/wan_vae.py --preset tiny --encode --out DIR [--frames 5] [--height 16 --width 24]
"""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

PRESETS = {
    "tiny": dict(base=8, mult=[1, 2, 4, 4], res=1, temporal_up=[True, True, False]),
    "wan2.1": dict(base=96, mult=[1, 2, 4, 4], res=2, temporal_up=[True, True, False]),
}
Z = 16
MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


def decoder_layout(p):
    """(name, kind, in, out) of the decoder's modules in order, with the checkpoint's indices"""
    base, mult = p["base"], p["mult"]
    dims = [base * m for m in [mult[-1]] + mult[::-1]]
    mods = [("decoder.conv1", "conv3", Z, dims[0])]
    mods += [("decoder.middle.0", "res", dims[0], dims[0]), ("decoder.middle.1", "attn", dims[0], dims[0]),
             ("decoder.middle.2", "res", dims[0], dims[0])]
    idx = 0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        if i > 0:
            cin = cin // 2
        for _ in range(p["res"] + 1):
            mods.append((f"decoder.upsamples.{idx}", "res", cin, cout))
            idx += 1
            cin = cout
        if i != len(mult) - 1:
            mode = "up3d" if p["temporal_up"][i] else "up2d"
            mods.append((f"decoder.upsamples.{idx}", mode, cout, cout // 2))
            idx += 1
    mods.append(("decoder.head", "head", dims[-1], 3))
    return mods


def encoder_layout(p):
    """(name, kind, in, out) of the encoder's modules in order, with the checkpoint's indices"""
    base, mult = p["base"], p["mult"]
    dims = [base * m for m in [1] + mult]
    down = p["temporal_up"][::-1]
    mods = [("encoder.conv1", "conv3", 3, dims[0])]
    idx = 0
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(p["res"]):
            mods.append((f"encoder.downsamples.{idx}", "res", cin, cout))
            idx += 1
            cin = cout
        if i != len(mult) - 1:
            mods.append((f"encoder.downsamples.{idx}", "down3d" if down[i] else "down2d", cout, cout))
            idx += 1
    c = dims[-1]
    mods += [("encoder.middle.0", "res", c, c), ("encoder.middle.1", "attn", c, c), ("encoder.middle.2", "res", c, c)]
    mods.append(("encoder.head", "head", c, 2 * Z))
    return mods


def rnd(gen, shape, std, mean=0.0, device="cpu"):
    return (torch.randn(shape, generator=gen, device=device) * std + mean).to(torch.bfloat16).float()


def make_weights(p, gen, device, encoder=False):
    w = {"conv2.weight": rnd(gen, (Z, Z, 1, 1, 1), 1 / 4, device=device), "conv2.bias": rnd(gen, (Z,), 0.02, device=device)}

    def conv(name, cout, cin, k):
        fan = cin * math.prod(k)
        w[name + ".weight"] = rnd(gen, (cout, cin, *k), 1 / math.sqrt(fan), device=device)
        w[name + ".bias"] = rnd(gen, (cout,), 0.02, device=device)

    def gamma(name, c, images):
        w[name] = rnd(gen, (c, 1, 1) if images else (c, 1, 1, 1), 0.1, 1.0, device=device)

    layout = decoder_layout(p)
    if encoder:
        w["conv1.weight"] = rnd(gen, (2 * Z, 2 * Z, 1, 1, 1), 1 / math.sqrt(2 * Z), device=device)
        w["conv1.bias"] = rnd(gen, (2 * Z,), 0.02, device=device)
        layout = layout + encoder_layout(p)
    for name, kind, cin, cout in layout:
        if kind == "conv3":
            conv(name, cout, cin, (3, 3, 3))
        elif kind == "res":
            gamma(name + ".residual.0.gamma", cin, False)
            conv(name + ".residual.2", cout, cin, (3, 3, 3))
            gamma(name + ".residual.3.gamma", cout, False)
            conv(name + ".residual.6", cout, cout, (3, 3, 3))
            if cin != cout:
                conv(name + ".shortcut", cout, cin, (1, 1, 1))
        elif kind == "attn":
            gamma(name + ".norm.gamma", cin, True)
            conv(name + ".to_qkv", 3 * cin, cin, (1, 1))
            conv(name + ".proj", cin, cin, (1, 1))
        elif kind in ("up3d", "up2d"):
            conv(name + ".resample.1", cout, cin, (3, 3))
            if kind == "up3d":
                conv(name + ".time_conv", 2 * cin, cin, (3, 1, 1))
        elif kind in ("down3d", "down2d"):
            conv(name + ".resample.1", cout, cin, (3, 3))
            if kind == "down3d":
                conv(name + ".time_conv", cout, cin, (3, 1, 1))
        elif kind == "head":
            gamma(name + ".0.gamma", cin, False)
            conv(name + ".2", cout, cin, (3, 3, 3))
    return w


def rms(x, g):
    """normalise over channels (dim 0 of [C, ...]) to unit L2 norm, times sqrt(C) and gamma"""
    return F.normalize(x, dim=0) * math.sqrt(x.shape[0]) * g.reshape(-1, *([1] * (x.dim() - 1)))


class Stream:
    """what the encoder and the decoder share: causal convolutions over a stream, blocks"""

    def __init__(self, p, w):
        self.p, self.w = p, w
        self.hist = {}  # conv name -> last input frames [C, n, H, W]
        self.started = set()  # up/downsample3d blocks that have seen their first frame

    def conv3(self, name, x):
        """causal 3x3x3 (or 3x1x1) conv over the stream, zero frames before the start"""
        wt, b = self.w[name + ".weight"], self.w[name + ".bias"]
        h = self.hist.get(name)
        if h is None:
            h = torch.zeros(x.shape[0], 2, *x.shape[2:], device=x.device, dtype=x.dtype)
        xx = torch.cat([h, x], dim=1)
        self.hist[name] = xx[:, -2:].clone()
        pad = (wt.shape[3] // 2, wt.shape[4] // 2)
        return F.conv3d(xx[None], wt, b, padding=(0, *pad))[0]

    def res(self, name, x):
        h = F.silu(rms(x, self.w[name + ".residual.0.gamma"]))
        h = self.conv3(name + ".residual.2", h)
        h = F.silu(rms(h, self.w[name + ".residual.3.gamma"]))
        h = self.conv3(name + ".residual.6", h)
        if name + ".shortcut.weight" in self.w:
            x = F.conv3d(x[None], self.w[name + ".shortcut.weight"], self.w[name + ".shortcut.bias"])[0]
        return x + h

    def attn(self, name, x):
        c, t, hh, ww = x.shape
        out = []
        for f in range(t):
            y = rms(x[:, f], self.w[name + ".norm.gamma"])  # [C, H, W]
            qkv = F.conv2d(y[None], self.w[name + ".to_qkv.weight"], self.w[name + ".to_qkv.bias"])[0]
            qkv = qkv.reshape(3 * c, hh * ww).T  # [L, 3C]
            q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
            a = torch.softmax(q @ k.T / math.sqrt(c), dim=-1) @ v  # [L, C]
            a = a.T.reshape(c, 1, hh, ww)
            out.append(F.conv2d(a.transpose(0, 1), self.w[name + ".proj.weight"], self.w[name + ".proj.bias"]).transpose(0, 1))
        return x + torch.cat(out, dim=1)


class Decoder(Stream):
    def up(self, name, x, temporal):
        c = x.shape[0]
        if temporal:
            if name in self.started:
                y = self.conv3(name + ".time_conv", x)  # [2C, T, H, W]
                x = torch.stack([y[:c], y[c:]], dim=2).reshape(c, 2 * x.shape[1], *x.shape[2:])
            else:
                self.started.add(name)  # the first frame passes through, un-doubled
        frames = []
        for f in range(x.shape[1]):
            u = F.interpolate(x[:, f][None].float(), scale_factor=2.0, mode="nearest").to(x.dtype)
            frames.append(F.conv2d(u, self.w[name + ".resample.1.weight"], self.w[name + ".resample.1.bias"], padding=1)[0])
        return torch.stack(frames, dim=1)

    def frame(self, z):
        """one latent frame [Z, 1, h, w] (already un-scaled and through conv2) -> video frames"""
        x = z
        for name, kind, _, _ in decoder_layout(self.p):
            if kind == "conv3":
                x = self.conv3(name, x)
            elif kind == "res":
                x = self.res(name, x)
            elif kind == "attn":
                x = self.attn(name, x)
            elif kind == "up3d":
                x = self.up(name, x, True)
            elif kind == "up2d":
                x = self.up(name, x, False)
            elif kind == "head":
                x = self.conv3(name + ".2", F.silu(rms(x, self.w[name + ".0.gamma"])))
        return x


class Encoder(Stream):
    def down(self, name, x, temporal):
        frames = []
        for f in range(x.shape[1]):
            u = F.pad(x[:, f][None], (0, 1, 0, 1))  # zeros at the right and the bottom
            frames.append(F.conv2d(u, self.w[name + ".resample.1.weight"], self.w[name + ".resample.1.bias"], stride=2)[0])
        x = torch.stack(frames, dim=1)
        if not temporal:
            return x
        if name not in self.started:
            self.started.add(name)  # the first frame passes through; it is the next window's start
            self.hist[name] = x[:, -1:].clone()
            return x
        xx = torch.cat([self.hist[name], x], dim=1)
        self.hist[name] = x[:, -1:].clone()
        wt, b = self.w[name + ".time_conv.weight"], self.w[name + ".time_conv.bias"]
        return F.conv3d(xx[None], wt, b, stride=(2, 1, 1))[0]

    def group(self, x):
        """one group of frames [3, n, H, W] (n = 1 first, then 4) -> latent frames [2Z, 1, h, w]"""
        for name, kind, _, _ in encoder_layout(self.p):
            if kind == "conv3":
                x = self.conv3(name, x)
            elif kind == "res":
                x = self.res(name, x)
            elif kind == "attn":
                x = self.attn(name, x)
            elif kind in ("down3d", "down2d"):
                x = self.down(name, x, kind == "down3d")
            elif kind == "head":
                x = self.conv3(name + ".2", F.silu(rms(x, self.w[name + ".0.gamma"])))
        return x


def encode(p, w, video):
    """video [3, 1 + 4k, H, W] in [-1, 1] -> normalised latent means [Z, 1 + k, H / 8, W / 8]"""
    assert (video.shape[1] - 1) % 4 == 0, "the encoder takes 1 + 4k frames"
    enc = Encoder(p, w)
    groups = [video[:, :1]] + [video[:, i : i + 4] for i in range(1, video.shape[1], 4)]
    h = torch.cat([enc.group(g) for g in groups], dim=1)
    mu = F.conv3d(h[None], w["conv1.weight"], w["conv1.bias"])[0][:Z]
    mean = torch.tensor(MEAN, device=video.device, dtype=video.dtype).view(Z, 1, 1, 1)
    std = torch.tensor(STD, device=video.device, dtype=video.dtype).view(Z, 1, 1, 1)
    return (mu - mean) / std


def decode(p, w, z):
    """z [Z, T, h, w] (normalised latents) -> video [3, 1 + 4 (T - 1), 8h, 8w] in [-1, 1]"""
    mean = torch.tensor(MEAN, device=z.device, dtype=z.dtype).view(Z, 1, 1, 1)
    std = torch.tensor(STD, device=z.device, dtype=z.dtype).view(Z, 1, 1, 1)
    z = z * std + mean
    z = F.conv3d(z[None], w["conv2.weight"], w["conv2.bias"])[0]
    dec = Decoder(p, w)
    return torch.cat([dec.frame(z[:, i : i + 1]) for i in range(z.shape[1])], dim=1).clamp(-1, 1)


def time_torch(meta, run, w):
    """CUDA-event time and peak memory of run(dtype, weights) in bf16 and float32 (after a warm-up run)"""
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    for dtype in (torch.bfloat16, torch.float32):
        wd = {k: v.to(dtype) for k, v in w.items()}
        with torch.no_grad():
            run(dtype, wd)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            ev[0].record()
            run(dtype, wd)
            ev[1].record()
            torch.cuda.synchronize()
        name = str(dtype).split(".")[-1]
        meta[f"torch_ms_{name}"] = ev[0].elapsed_time(ev[1])
        meta[f"torch_peak_bytes_{name}"] = torch.cuda.max_memory_allocated()


def main_encode(a, p, w, gen):
    save_file({k: v.to(torch.bfloat16).contiguous().cpu() for k, v in w.items()}, os.path.join(a.out, "vae.safetensors"))
    # a smooth random video (low-frequency noise upsampled, plus a little pixel noise), in [-1, 1]
    coarse = torch.rand(3, a.frames, max(1, a.height // 8), max(1, a.width // 8), generator=gen, device=a.device) * 2 - 1
    video = F.interpolate(coarse[None], size=(a.frames, a.height, a.width), mode="trilinear")[0]
    video = (video + 0.1 * torch.randn(video.shape, generator=gen, device=a.device)).clamp(-1, 1)
    with torch.no_grad():
        latent = encode(p, w, video)
    save_file({"video": video.cpu().contiguous(), "latent": latent.cpu().contiguous()}, os.path.join(a.out, "encode.safetensors"))
    meta = dict(preset=a.preset, frames=a.frames, height=a.height, width=a.width, latent_shape=list(latent.shape))
    if a.time and a.device == "cuda":
        time_torch(meta, lambda dtype, wd: encode(p, wd, video.to(dtype)), w)
    with open(os.path.join(a.out, "encode.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(json.dumps(meta))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=PRESETS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=3, help="latent frames")
    ap.add_argument("--height", type=int, default=8, help="latent height")
    ap.add_argument("--width", type=int, default=12, help="latent width")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encode", action="store_true", help="encode a random video (frames/height/width in pixels)")
    ap.add_argument("--time", action="store_true", help="also time the decode (bf16 autocast and float32)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    p = PRESETS[a.preset]
    gen = torch.Generator(device=a.device).manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    w = make_weights(p, gen, a.device, encoder=a.encode)
    if a.encode:
        return main_encode(a, p, w, gen)
    save_file({k: v.to(torch.bfloat16).contiguous().cpu() for k, v in w.items()}, os.path.join(a.out, "vae.safetensors"))
    z = torch.randn(Z, a.frames, a.height, a.width, generator=gen, device=a.device)
    with torch.no_grad():
        video = decode(p, w, z)
    save_file({"latent": z.cpu().contiguous(), "video": video.cpu().contiguous()}, os.path.join(a.out, "decode.safetensors"))
    meta = dict(preset=a.preset, frames=a.frames, height=a.height, width=a.width, video_shape=list(video.shape))
    if a.time and a.device == "cuda":
        time_torch(meta, lambda dtype, wd: decode(p, wd, z.to(dtype)), w)
    with open(os.path.join(a.out, "decode.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
