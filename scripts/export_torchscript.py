"""Trace (or script) a PyTorch model into the TorchScript file `dfscan import --torchscript` takes.

usage: python3 export_torchscript.py --module MODULE:CALLABLE [--kwargs JSON] [--checkpoint FILE]
           --input-shape N,3,S,S | N,T,3,S,S [--script] [--device cpu|cuda] -o OUT.pt

  --module      where the network comes from: a Python file or an importable module, then ':' and
                the class or function that builds it (e.g. timm:create_model).
  --kwargs      JSON keyword arguments for that callable (e.g. {"model_name": "efficientnet_b4"}).
  --checkpoint  a state_dict (.pth/.pt; {"state_dict": ...}, {"model": ...} and DataParallel's
                "module." prefix are unwrapped), loaded strictly: a missing or extra key fails.
  --input-shape the shape to trace with: N x 3 x S x S for a frame model, N x T x 3 x S x S for a
                sequence model; float32, as dfscan feeds it after the contract's preprocessing.
  --script      torch.jit.script instead of tracing (for data-dependent control flow).
  --device      where to trace (default cpu). A module traced on a GPU may keep the device in its
                graph and then fails on CPU-only machines; dfscan says so at import.

The model is put in eval mode before tracing (BatchNorm running statistics, no dropout); the
traced module is then checked against the eager model on a fresh input of another batch size,
so a trace that baked in the batch size fails here rather than in the scan.

Examples (then `dfscan import --torchscript OUT.pt` with the contract; README "Models"):
  # A timm EfficientNet-B4 with a one-logit head (SBI's detector; needs `pip install timm`,
  # which the set-up's venv does not have):
  python3 scripts/export_torchscript.py --module timm:create_model \\
      --kwargs '{"model_name": "efficientnet_b4", "num_classes": 1}' \\
      --checkpoint sbi_ffraw.pth --input-shape 1,3,380,380 -o sbi-b4.pt
  # A plain state_dict of the built-in MesoInception4 (the PyTorch port's layout):
  python3 scripts/export_torchscript.py --module scripts/torchscript_examples.py:MesoInception4 \\
      --checkpoint ../shared/reference/mesonet-torch/mesonet_dfdc.pth --input-shape 1,3,256,256 -o meso.pt
"""
import argparse
import importlib
import importlib.util
import json
import os

import torch


def load_callable(spec):
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise SystemExit(f"--module {spec}: expected MODULE:CALLABLE")
    if where.endswith(".py") or os.path.sep in where:
        loader = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(where))[0], where)
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


def load_state_dict(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return {k.removeprefix("module."): v for k, v in obj.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--module", required=True)
    p.add_argument("--kwargs", default="{}")
    p.add_argument("--checkpoint")
    p.add_argument("--input-shape", required=True)
    p.add_argument("--script", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()

    model = load_callable(args.module)(**json.loads(args.kwargs))
    if args.checkpoint:
        model.load_state_dict(load_state_dict(args.checkpoint), strict=True)
    model = model.eval().to(args.device)
    shape = [int(d) for d in args.input_shape.split(",")]
    if len(shape) not in (4, 5) or shape[-3] != 3:
        raise SystemExit(f"--input-shape {shape}: expected N,3,S,S or N,T,3,S,S")
    example = torch.randn(shape, device=args.device)
    with torch.no_grad():
        module = torch.jit.script(model) if args.script else torch.jit.trace(model, example)
        # Another batch size than the trace's, so a shape baked into the graph shows up here.
        check = torch.randn([shape[0] + 2] + shape[1:], device=args.device)
        want, got = model(check), module(check)
    if want.shape != got.shape or not torch.allclose(want, got, atol=1e-5, rtol=1e-4):
        raise SystemExit(f"the traced module disagrees with the model on a batch of {check.shape[0]} "
                         f"(shapes {tuple(want.shape)} vs {tuple(got.shape)}): try --script")
    torch.jit.save(module, args.output)
    print(f"wrote {args.output}: {type(model).__name__}, input {shape}, output {tuple(got.shape[1:])} per input, "
          f"{'scripted' if args.script else 'traced'} on {args.device}")


if __name__ == "__main__":
    main()
