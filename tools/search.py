#!/usr/bin/env python
"""NSGA-II search of a trained supernet for the best accuracy x latency trade-offs on a target device.

    python tools/search.py --weights SUPERNET.pt --data DATA.yaml --lut LUT.json [--latency-budget MS]
        [--population 50] [--generations 20] [--seed 0] [--objective map50_95|map50] [--calib-batches N]
        [--val-images N] [--latency lut|measure] [--params-budget M] [--gflops-budget G] --out DIR [--resume]

Writes DIR/history.csv (every evaluated subnet), DIR/pareto.csv|json|png (the front), and for every front member
DIR/front/<i>/ plus DIR/best/ (the most accurate subnet within the budgets): arch.json, model.yaml, model.pt, which
work with stock `yolo val/predict/export/train`. --resume continues a killed search.
"""

import argparse
from pathlib import Path

from nas_plugin.cli import run
from nas_plugin.search import CALIB_BATCHES


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="trained supernet checkpoint (or supernet YAML, untrained)")
    p.add_argument("--data", required=True, help="dataset YAML: train images recalibrate BN, val images score")
    p.add_argument("--lut", required=True, help="latency table from tools/build_lut.py (its imgsz is the search's)")
    p.add_argument("--latency-budget", type=float, help="latency limit in ms (hard constraint)")
    p.add_argument("--params-budget", type=float, help="parameter limit in millions (optional)")
    p.add_argument("--gflops-budget", type=float, help="GFLOPs limit (optional)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", default="map50_95", help="map50_95 (default) or map50")
    p.add_argument("--calib-batches", type=int, default=CALIB_BATCHES, help=f"train batches of 16 for BN recalibration (default {CALIB_BATCHES})")
    p.add_argument("--val-images", type=int, default=500, help="rank on a seeded subset of N val images, the front re-scored on all (default 500)")
    p.add_argument("--latency", default="lut", help="lut (default: predicted) or measure (whole subnets timed)")
    p.add_argument("--device", default="cpu", help="device for accuracy evaluation")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    args = p.parse_args(argv)

    from nas_plugin.errors import NASError
    from nas_plugin.files import check_writable
    from nas_plugin.search import OBJECTIVES

    checks = [
        (args.latency_budget is None or args.latency_budget > 0, f"--latency-budget must be > 0 ms, got {args.latency_budget}."),
        (args.params_budget is None or args.params_budget > 0, f"--params-budget must be > 0 (millions), got {args.params_budget}."),
        (args.gflops_budget is None or args.gflops_budget > 0, f"--gflops-budget must be > 0, got {args.gflops_budget}."),
        (args.population >= 4, f"--population must be >= 4, got {args.population}."),
        (args.generations >= 1, f"--generations must be >= 1, got {args.generations}."),
        (args.objective in OBJECTIVES, f"--objective {args.objective!r} is not allowed; choose from {list(OBJECTIVES)}."),
        (args.latency in ("lut", "measure"), f"--latency {args.latency!r} is not allowed; choose from ['lut', 'measure']."),
        (args.calib_batches >= 1, f"--calib-batches must be >= 1, got {args.calib_batches}."),
        (args.val_images is None or args.val_images >= 1, f"--val-images must be >= 1, got {args.val_images}."),
    ]
    for ok, message in checks:
        if not ok:
            raise NASError(message)
    out = Path(args.out)
    check_writable(out, "--out")
    if (out / "history.csv").exists() and not args.resume:
        raise NASError(f"{out} already holds a search (history.csv); pass --resume to continue it, or choose another --out.")

    from nas_plugin.search_job import run_job

    run_job(args, out)


if __name__ == "__main__":
    run(main, kept="history.csv keeps every subnet evaluated so far: run the same command with --resume to continue")
