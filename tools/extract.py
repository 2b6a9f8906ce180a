#!/usr/bin/env python
"""Extract one subnet of a supernet as a standard Ultralytics model.

    python tools/extract.py --weights SUPERNET.pt --arch {max,min,random,ARCH.json} [--seed N] --out DIR

writes DIR/arch.json, DIR/model.yaml (static modules only) and DIR/model.pt (inherited weights); the results work
with stock `yolo val/predict/export model=DIR/model.pt` and `yolo train model=DIR/model.yaml`.
--weights also accepts a supernet YAML (random init), so extraction works before any training.
"""

import argparse

from nas_plugin.cli import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="supernet checkpoint (.pt) or supernet model YAML")
    p.add_argument("--arch", default="max", help="max, min, random, or a path to an arch JSON file")
    p.add_argument("--seed", type=int, default=0, help="seed for --arch random")
    p.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)

    from nas_plugin.extract import save_subnet
    from nas_plugin.space import load_arch
    from nas_plugin.supernet import load_supernet, space_from_model

    model = load_supernet(args.weights)
    arch = load_arch(args.arch, space_from_model(model), seed=args.seed)
    static = save_subnet(model, arch, args.out, source=args.weights)
    n = sum(p.numel() for p in static.parameters())
    print(f"subnet ({n:,} parameters) written to {args.out}: arch.json, model.yaml, model.pt")


if __name__ == "__main__":
    run(main)
