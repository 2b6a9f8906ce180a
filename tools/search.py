#!/usr/bin/env python
"""NSGA-II search of a trained supernet for the best accuracy x latency trade-offs on a target device.

    python tools/search.py --weights SUPERNET.pt --data DATA.yaml --lut LUT.json [LUT2.json ...] [--latency-budget MS]
        [--population 50] [--generations 20] [--seed 0] [--objective map50_95|map50] [--calib-batches N]
        [--val-images N] [--latency lut|measure] [--no-measure-front] [--params-budget M] [--gflops-budget G]
        [--workers N] [--ray auto|HOST:PORT [--ray-cpus-per-worker C] [--ray-gpus-per-worker G]]
        [--select-epochs E [--select-args "key=value ..."]] --out DIR [--resume]

Writes DIR/history.csv (every evaluated subnet), DIR/pareto.csv|json|png (the front), and for every front member
DIR/front/<i>/ plus DIR/best/ (the most accurate subnet within the budgets, its latency timed whole unless
--no-measure-front): arch.json, model.yaml, model.pt, which work with stock `yolo val/predict/export/train`; the
same for DIR/named/<name>/, each named arch of the supernet YAML (e.g. yolov8n) that meets the budgets (timed whole
with the front, or by the table with --no-measure-front), and DIR/named/near_budget/ where the front ends short of the
latency budget: the most accurate subnet evaluated between its end and the budget.
--resume continues a killed search.
With several tables (one per input size, built with `tools/build_lut.py --units-of` the first), each size is
searched into DIR/imgsz<N>/ as above, and DIR/best/ and DIR/pareto.* are the best and the front over all sizes: the
input size is chosen with the arch (the written model.pt keeps it as `yolo val/predict/export`'s default imgsz).
Inherited accuracy does not rank sizes, nor the stock arch against smaller subnets, as fine-tuning does: with
--select-epochs E every finalist (each size's best/ and named/<name>/) is fine-tuned E epochs with stock `yolo train`
(plus --select-args) in DIR/finalists/, and DIR/best/ becomes the one with the highest val score
(DIR/finalists.csv|json). Without it, fine-tune the finalists yourself and keep the best on val.
"""

import argparse

from nas_plugin.cli import run
from nas_plugin.search import CALIB_BATCHES, GENERATIONS, LATENCY_MODES, OBJECTIVES, POPULATION, VAL_IMAGES


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="trained supernet checkpoint (or supernet YAML, untrained)")
    p.add_argument("--data", required=True, help="dataset YAML: train images recalibrate BN, val images score")
    p.add_argument(
        "--lut",
        required=True,
        nargs="+",
        help="latency table from tools/build_lut.py (its imgsz is the search's); several, one per imgsz and built "
        "--units-of one another, search every size and pick the best over them",
    )
    p.add_argument("--latency-budget", type=float, help="latency limit in ms (hard constraint)")
    p.add_argument("--params-budget", type=float, help="parameter limit in millions (optional)")
    p.add_argument("--gflops-budget", type=float, help="GFLOPs limit (optional)")
    p.add_argument("--population", type=int, default=POPULATION)
    p.add_argument("--generations", type=int, default=GENERATIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", default=OBJECTIVES[0], help=f"one of {list(OBJECTIVES)} (default {OBJECTIVES[0]})")
    p.add_argument(
        "--calib-batches",
        type=int,
        default=CALIB_BATCHES,
        help=f"train batches of 16 for BN recalibration (default {CALIB_BATCHES})",
    )
    p.add_argument(
        "--val-images",
        type=int,
        default=VAL_IMAGES,
        help=f"rank on a seeded subset of N val images, the front re-scored on all (default {VAL_IMAGES})",
    )
    p.add_argument(
        "--latency", default=LATENCY_MODES[0], help="lut (default: predicted) or measure (whole subnets timed)"
    )
    p.add_argument(
        "--measure-front",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the front's subnets whole, pick best/ by measured latency (default; --no-measure-front: by table)",
    )
    p.add_argument("--device", default="cpu", help="device for accuracy evaluation")
    p.add_argument(
        "--workers",
        type=int,
        help="processes evaluating each generation (default: one per CPU core, up to 8; 1 on a GPU)",
    )
    p.add_argument(
        "--ray",
        help="evaluate on a running Ray cluster: 'auto' (the one this node is part of) or HOST:PORT of its head node",
    )
    p.add_argument("--ray-cpus-per-worker", type=int, default=1, help="CPUs per Ray worker (default 1)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0, help="GPUs per Ray worker (default 0: CPU)")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--select-epochs",
        type=int,
        default=0,
        help="fine-tune each finalist this many epochs and make the best on val DIR/best/ (default 0: off)",
    )
    p.add_argument(
        "--select-args",
        default="",
        help='stock yolo train arguments for those fine-tunes, e.g. "optimizer=AdamW lr0=0.002 batch=32"',
    )
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    args = p.parse_args(argv)

    from nas_plugin.errors import NASError
    from nas_plugin.finalists import SELECT_SETS, select_finalists
    from nas_plugin.run_files import parse_train_args
    from nas_plugin.search_job import default_workers, run_search_job
    from nas_plugin.size_search import run_size_search

    if args.select_epochs < 0:
        raise NASError(f"--select-epochs must be >= 0 (0: no selection), got {args.select_epochs}.")
    select_args = parse_train_args(args.select_args, "--select-args", SELECT_SETS, "the selection")
    options = {
        k: v
        for k, v in vars(args).items()
        if k not in ("weights", "data", "lut", "out", "select_epochs", "select_args")
    }
    if len(args.lut) > 1:
        run_size_search(args.weights, args.data, args.lut, args.out, **options)
    else:
        run_search_job(args.weights, args.data, args.lut[0], args.out, **options)
    if args.select_epochs:
        select_finalists(
            args.out,
            args.data,
            args.select_epochs,
            {"device": args.device, **select_args},
            args.objective,
            jobs=args.workers or default_workers(args.device),
        )


if __name__ == "__main__":
    run(
        main,
        kept="history.csv keeps every subnet evaluated so far, and finalists/ every finished fine-tune: run the same "
        "command with --resume to continue",
    )
