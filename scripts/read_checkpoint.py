"""Dump every tensor of a PyTorch checkpoint (.pth/.pt, legacy pickle or zip) or a Keras .h5
file into safetensors, under its source name. `dfscan import` runs this and does the mapping
to dfscan's layout itself; Python is used only because it reads these formats natively.

usage: python3 read_checkpoint.py INPUT OUTPUT.safetensors
"""
import sys

import numpy as np
import torch
from safetensors.torch import save_file


def from_torch(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a state_dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def from_keras(path):
    import h5py

    tensors = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                tensors[name] = torch.from_numpy(np.asarray(obj, dtype=np.float32))

        root.visititems(visit)
    return tensors


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        magic = f.read(8)
    tensors = from_keras(src) if magic.startswith(b"\x89HDF") else from_torch(src)
    save_file({k: v.contiguous().float() for k, v in tensors.items()}, dst)


if __name__ == "__main__":
    main()
