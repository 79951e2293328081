"""Writes the small checkpoint fixtures sfc's CPU tests read (test/fixtures/checkpoints/), with real
PyTorch: state dicts shaped like Self-Forcing's (`generator` / `generator_ema`, keys with the
`model.` and `_fsdp_wrapped_module.` prefixes), bf16/f16/f32/i64/bool tensors, a strided view, two
tensors sharing one storage, a Parameter, and the same tensors as safetensors. expected.json holds
every tensor's dtype, shape and values (as float64 lists) for the tests to compare against.

Run on a machine with PyTorch (the GPU machine):  python3 test/reference/make_checkpoint_fixtures.py OUT_DIR
"""
import json
import os
import sys
from collections import OrderedDict

import torch
from safetensors.torch import save_file

out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/checkpoints"
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(1234)


def rnd(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g).to(dtype)


base = rnd(6, 4)
shared = torch.arange(24, dtype=torch.float32)
generator = OrderedDict()
generator["model.patch_embedding.weight"] = rnd(8, 4, 1, 2, 2, dtype=torch.bfloat16)
generator["model.patch_embedding.bias"] = rnd(8, dtype=torch.bfloat16)
generator["model.blocks.0.self_attn.q.weight"] = rnd(8, 8, dtype=torch.bfloat16)
generator["model.blocks.0.norm3.weight"] = torch.nn.Parameter(rnd(8, dtype=torch.float16), requires_grad=False)
generator["model.blocks.0.ffn.0.weight"] = base.t()  # a strided (transposed) view
generator["model.head.head.weight"] = shared[4:12].view(2, 4)  # shares `shared`'s storage
generator["model.head.modulation"] = shared[0:6].view(1, 2, 3)  # the same storage, another offset
generator["model.freqs_index"] = torch.arange(5, dtype=torch.int64) * 1000003
generator["model.mask"] = torch.tensor([True, False, True])

ema = OrderedDict((k.replace("model.", "model._fsdp_wrapped_module."), v.detach().clone() * 0 + 1 if v.dtype != torch.bool else v.clone()) for k, v in generator.items())
checkpoint = {"generator": generator, "generator_ema": ema, "step": 600}

torch.save(checkpoint, os.path.join(out, "self_forcing_tiny.pt"))
torch.save(generator, os.path.join(out, "state_dict_tiny.pt"))
flat = {k: v.detach().clone().contiguous() for k, v in generator.items()}  # safetensors stores no shared storage
save_file(flat, os.path.join(out, "state_dict_tiny.safetensors"), metadata={"format": "pt"})


def describe(sd):
    return {
        k: {
            "dtype": str(v.dtype).replace("torch.", ""),
            "shape": list(v.shape),
            "values": v.detach().to(torch.float64).flatten().tolist(),
        }
        for k, v in sd.items()
    }


expected = {"generator": describe(generator), "generator_ema": describe(ema), "step": 600, "torch": torch.__version__}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
for name in sorted(os.listdir(out)):
    print(name, os.path.getsize(os.path.join(out, name)))
