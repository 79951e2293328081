"""Writes torch.save-style checkpoints without torch, for test/runtime/pytorch-checkpoint.test.ts.

A stand-in `torch` package (torch, torch._utils, torch.storage) is registered in sys.modules with the
names torch.save pickles: storage classes, dtype objects, torch.device, _rebuild_tensor_v2/_v3 and
_rebuild_parameter. Fake tensors reduce to those calls exactly as torch's Tensor.__reduce_ex__ does,
and a Pickler with persistent_id emits torch's storage tuples ('storage', <type>, key, location, numel).
The archive is zipped like torch's writer: stored entries, data aligned to 64 bytes, in the order
<name>/data.pkl, <name>/byteorder, <name>/data/<key>..., <name>/version, <name>/.data/serialization_id.

Usage: python3 fake_torch_pickles.py OUT_DIR
Writes OUT_DIR/*.pt and OUT_DIR/expected.json (every tensor's metadata and its row-major bytes, as
numpy computes them through as_strided).
"""

import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

# ---- the fake torch package ------------------------------------------------------------------------

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch_storage = types.ModuleType("torch.storage")
torch._utils = torch_utils
torch.storage = torch_storage
sys.modules.update({"torch": torch, "torch._utils": torch_utils, "torch.storage": torch_storage})


def _in(module, name, obj):
    obj.__module__ = module.__name__
    obj.__qualname__ = name
    obj.__name__ = name
    setattr(module, name, obj)
    return obj


def _never(*_args):
    raise RuntimeError("fake torch: not callable")


for fn in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
    _in(torch_utils, fn, types.FunctionType(_never.__code__, {}, fn))

STORAGE_CLASSES = {}
for cls_name, dt in [
    ("BFloat16Storage", "bfloat16"),
    ("HalfStorage", "float16"),
    ("FloatStorage", "float32"),
    ("DoubleStorage", "float64"),
    ("LongStorage", "int64"),
    ("IntStorage", "int32"),
    ("BoolStorage", "bool"),
    ("ByteStorage", "uint8"),
]:
    STORAGE_CLASSES[dt] = _in(torch, cls_name, type(cls_name, (), {}))
UntypedStorage = _in(torch_storage, "UntypedStorage", type("UntypedStorage", (), {}))


class dtype:  # noqa: N801 - torch's name
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return self.name  # pickled as the global torch.<name>, as torch does


dtype.__module__ = "torch"
torch.dtype = dtype
for name in ["bfloat16", "float16", "float32", "float64", "int64", "int32", "bool", "uint8", "float8_e4m3fn"]:
    setattr(torch, name, dtype(name))


class device:  # noqa: N801
    def __init__(self, type_, index=None):
        self.type, self.index = type_, index

    def __reduce__(self):
        return (device, (self.type, self.index))


device.__module__ = "torch"
torch.device = device

# numpy element types (bf16 as raw uint16 bits)
NP = {
    "bfloat16": np.uint16,
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
    "float8_e4m3fn": np.uint8,
}


class Storage:
    def __init__(self, key, torch_dtype, data, untyped=False, dtype_in_pid=False, location="cpu"):
        self.key, self.torch_dtype, self.data = key, torch_dtype, np.ascontiguousarray(data)
        self.untyped, self.dtype_in_pid, self.location = untyped, dtype_in_pid, location

    def pid(self):
        if self.untyped:
            return ("storage", UntypedStorage, self.key, self.location, self.data.nbytes)
        kind = getattr(torch, self.torch_dtype) if self.dtype_in_pid else STORAGE_CLASSES[self.torch_dtype]
        return ("storage", kind, self.key, self.location, self.data.size)


class Tensor:
    def __init__(self, storage, offset, size, stride, requires_grad=False, v3_dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.requires_grad, self.v3_dtype = requires_grad, v3_dtype

    def __reduce_ex__(self, proto):
        args = (self.storage, self.offset, self.size, self.stride, self.requires_grad, collections.OrderedDict())
        if self.v3_dtype:
            return (torch_utils._rebuild_tensor_v3, args + (getattr(torch, self.v3_dtype),))
        return (torch_utils._rebuild_tensor_v2, args)

    def dtype_name(self):
        return self.v3_dtype or self.storage.torch_dtype

    def expected_bytes(self):
        # numpy's view of the same elements, in C order
        el = np.dtype(NP[self.dtype_name()])
        flat = np.frombuffer(self.storage.data.tobytes(), dtype=el)
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=[s * el.itemsize for s in self.stride]
        )
        return np.ascontiguousarray(view).astype(el.newbyteorder("<")).tobytes()


class Parameter:
    def __init__(self, data, requires_grad=True):
        self.data, self.requires_grad = data, requires_grad

    def __reduce_ex__(self, proto):
        return (torch_utils._rebuild_parameter, (self.data, self.requires_grad, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid() if isinstance(obj, Storage) else None


def torch_zip(path, archive, obj, protocol, byteorder="little", big_endian_data=False):
    buf = io.BytesIO()
    TorchPickler(buf, protocol=protocol).dump(obj)
    storages = {}

    def walk(x):
        if isinstance(x, Parameter):
            walk(x.data)
        elif isinstance(x, Tensor):
            storages[x.storage.key] = x.storage
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(obj)
    entries = [(f"{archive}/data.pkl", buf.getvalue()), (f"{archive}/byteorder", byteorder.encode())]
    for key in sorted(storages, key=int):
        data = storages[key].data
        if big_endian_data:
            data = data.astype(data.dtype.newbyteorder(">"))
        entries.append((f"{archive}/data/{key}", data.tobytes()))
    entries.append((f"{archive}/version", b"3\n"))
    entries.append((f"{archive}/.data/serialization_id", b"1234567890123456789012345678901234567890"))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            # torch pads the local header's extra field so every entry's data starts at a multiple of 64
            base = zf.fp.tell() + 30 + len(name.encode())
            pad = (-(base + 4)) % 64
            info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            zf.writestr(info, data)
    return storages


# ---- the fixtures ----------------------------------------------------------------------------------

rng = np.random.default_rng(1234)


def bf16_bits(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_state():
    """{generator: OrderedDict, generator_ema: OrderedDict, scalars...}, fresh storages each call."""
    w0 = Storage("0", "bfloat16", bf16_bits(rng.standard_normal(12)))
    b0 = Storage("1", "float32", rng.standard_normal(3).astype(np.float32))
    h0 = Storage("2", "float16", rng.standard_normal(10).astype(np.float16))
    pos = Storage("3", "int64", np.array([0, -1, 2**40, -(2**50), 7, 123456789012], dtype=np.int64))
    mask = Storage("4", "bool", np.array([True, False, True, True, False, False]))
    f64 = Storage("5", "float64", np.array([np.pi, -1e300, 5e-324], dtype=np.float64))
    shared = Storage("6", "float32", np.arange(10, dtype=np.float32) * 0.5 - 1)
    ema_w = Storage("7", "float32", rng.standard_normal(12).astype(np.float32))
    p = Storage("8", "bfloat16", bf16_bits(rng.standard_normal(4)))
    empty = Storage("9", "float32", np.zeros(0, dtype=np.float32))

    gen = collections.OrderedDict()
    gen["model._fsdp_wrapped_module.blocks.0.weight"] = Tensor(w0, 0, [4, 3], [3, 1])
    gen["model._fsdp_wrapped_module.blocks.0.bias"] = Tensor(b0, 0, [3], [1])
    gen["model.head.weight"] = Tensor(h0, 0, [2, 5], [5, 1])
    gen["model.pos_ids"] = Tensor(pos, 0, [6], [1])
    gen["model.mask"] = Tensor(mask, 0, [2, 3], [3, 1])
    gen["model.freqs"] = Tensor(f64, 0, [3], [1])
    gen["model.scalar"] = Tensor(shared, 9, [], [])
    gen._metadata = collections.OrderedDict([("", {"version": 1}), ("model", {"version": 2})])

    ema = collections.OrderedDict()
    ema["model.blocks.0.weight_t"] = Tensor(ema_w, 0, [3, 4], [1, 3])  # a transposed view
    ema["model.shared.a"] = Tensor(shared, 0, [2, 3], [3, 1])  # two views of one storage
    ema["model.shared.b"] = Tensor(shared, 6, [4], [1])
    ema["model.shared.every_other"] = Tensor(shared, 1, [2, 2], [4, 2])  # strided, offset
    ema["model.param"] = Parameter(Tensor(p, 0, [2, 2], [2, 1]), True)
    ema["model.empty"] = Tensor(empty, 0, [0, 4], [4, 1])
    root = {
        "generator": gen,
        "generator_ema": ema,
        "step": 1234,
        "lr": 1e-4,
        "name": "self-forcing",
        "big": 2**70,
        "none": None,
        "flag": True,
        "dtype": torch.bfloat16,
        "device": device("cuda", 0),
        "shape": (1, 2, 3),
    }
    return root


def make_untyped():
    """Newer writers: an UntypedStorage with _rebuild_tensor_v3, and a dtype global in the persistent id."""
    raw = Storage("0", "float32", rng.standard_normal(6).astype(np.float32), untyped=True, location="cuda:0")
    fp8 = Storage("1", "float8_e4m3fn", np.arange(8, dtype=np.uint8) * 9, untyped=True)
    named = Storage("2", "bfloat16", bf16_bits(rng.standard_normal(4)), dtype_in_pid=True)
    sd = collections.OrderedDict()
    sd["w"] = Tensor(raw, 0, [2, 3], [3, 1], v3_dtype="float32")
    sd["w_t"] = Tensor(raw, 0, [3, 2], [1, 3], v3_dtype="float32")
    sd["fp8"] = Tensor(fp8, 2, [3, 2], [2, 1], v3_dtype="float8_e4m3fn")
    sd["named"] = Tensor(named, 0, [4], [1])
    return sd


def make_big_endian():
    s = Storage("0", "float32", rng.standard_normal(6).astype(np.float32))
    h = Storage("1", "bfloat16", bf16_bits(rng.standard_normal(4)))
    sd = collections.OrderedDict()
    sd["w"] = Tensor(s, 0, [2, 3], [3, 1])
    sd["w_t"] = Tensor(s, 0, [3, 2], [1, 3])
    sd["h"] = Tensor(h, 1, [3], [1])
    return sd


def describe(obj, prefix=""):
    """Dotted names -> expected tensor description, for every tensor in obj (dicts nest)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(describe(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, Parameter):
        d = describe(obj.data, prefix)
        d[prefix]["requiresGrad"] = obj.requires_grad
        out.update(d)
    elif isinstance(obj, Tensor):
        out[prefix] = {
            "torchDtype": obj.dtype_name(),
            "shape": list(obj.size),
            "stride": list(obj.stride),
            "storageOffset": obj.offset,
            "storageKey": obj.storage.key,
            "requiresGrad": obj.requires_grad,
            "hex": obj.expected_bytes().hex(),
        }
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    expected = {}
    for protocol in (1, 2, 4, 5):
        state = make_state()
        name = f"nested_p{protocol}"
        torch_zip(os.path.join(out_dir, name + ".pt"), name if protocol != 4 else "archive", state, protocol)
        expected[name] = {"tensors": describe(state), "protocol": protocol}
    sd = make_untyped()
    torch_zip(os.path.join(out_dir, "untyped.pt"), "untyped", sd, 2)
    expected["untyped"] = {"tensors": describe(sd), "protocol": 2}
    sd = make_big_endian()
    torch_zip(os.path.join(out_dir, "big_endian.pt"), "big_endian", sd, 2, byteorder="big", big_endian_data=True)
    expected["big_endian"] = {"tensors": describe(sd), "protocol": 2}
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
