#!/usr/bin/env python
"""Extract one subnet of a supernet as a standard Ultralytics model.

    python tools/extract.py --weights SUPERNET.pt --arch {max,min,random,NAME,ARCH.json} [--seed N] --out DIR

writes DIR/arch.json, DIR/model.yaml (static modules only) and DIR/model.pt (inherited weights); the results work
with stock `yolo val/predict/export model=DIR/model.pt` and `yolo train model=DIR/model.yaml`.
--weights also accepts a supernet YAML (random init), so extraction works before any training.
With --data, the subnet's BatchNorm statistics are recalibrated on training images of that dataset (recommended for
any subnet but the one the supernet was last validated with, the largest).
"""

import argparse

from nas_plugin.cli import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="supernet checkpoint (.pt) or supernet model YAML")
    p.add_argument(
        "--arch",
        default="max",
        help="max, min, random, a name from the supernet YAML's archs: (e.g. yolov8n), or an arch JSON file",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for --arch random")
    p.add_argument("--out", required=True, help="output directory (new or empty, unless --force)")
    p.add_argument(
        "--force", action="store_true", help="replace arch.json, model.yaml and model.pt in a non-empty --out"
    )
    p.add_argument("--data", help="dataset YAML whose training images recalibrate BatchNorm (never its val images)")
    p.add_argument("--imgsz", type=int, help="calibration image size (default: the checkpoint's training imgsz)")
    p.add_argument("--calib-batches", type=int, default=8, help="calibration batches (default 8)")
    p.add_argument("--batch", type=int, default=16, help="calibration batch size (default 16)")
    args = p.parse_args(argv)

    from nas_plugin.extract import save_subnet
    from nas_plugin.space import load_arch
    from nas_plugin.supernet import load_supernet, named_archs, space_from_model

    model = load_supernet(args.weights)
    arch = load_arch(args.arch, space_from_model(model), seed=args.seed, named=named_archs(model))
    calib = None
    if args.data:
        from nas_plugin.calibration import calibration_batches, check_dataset

        imgsz = args.imgsz or dict(getattr(model, "args", None) or {}).get("imgsz", 640)
        calib = calibration_batches(check_dataset(args.data, model), imgsz, args.batch, args.calib_batches)
    static = save_subnet(model, arch, args.out, source=args.weights, calib=calib, exist_ok=args.force)
    n = sum(p.numel() for p in static.parameters())
    bn = f", BatchNorm recalibrated on {sum(len(b) for b in calib)} training images" if calib else ""
    print(f"subnet ({n:,} parameters{bn}) written to {args.out}: arch.json, model.yaml, model.pt")


if __name__ == "__main__":
    run(main)
