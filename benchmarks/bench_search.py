#!/usr/bin/env python
"""Cost of the search on the demo dataset: one subnet evaluation, and a population x generations search.

    python benchmarks/bench_search.py [--weights SUPERNET.pt] [--data DATA.yaml] [--lut LUT.json] [--imgsz 160]
        [--evals 8] [--val 100] [--calib-batches 2] [--population 50] [--generations 20]
        [--run-search [--workers 1,2] [--repeats 2]]

Times `--evals` subnet evaluations (extract + BN recalibration on --calib-batches x 16 train images + stock
validation on the val split) split into their parts, and estimates a population x generations search from them
(NSGA-II evaluates about `population` new subnets per generation; duplicates are skipped). With --run-search it
also runs the search for real (`run_search_job`, what tools/search.py runs; a LUT is built first unless --lut is
given) with each `--workers` count, `--repeats` times in alternating order, and checks that every run found the
same history and front. Without --data it makes the demo dataset (200 train / --val val images). Writes
benchmarks/results/search_evaluation.json, or with --run-search search_<population>x<generations>.json.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_searches(args, weights, data, work):
    """The same search with each of `--workers`, `--repeats` times in alternating order (drift cancels out);
    returns the wall times, the speed-ups against the first worker count, and whether every run agreed."""
    from nas_plugin.search_job import run_search_job

    lut = Path(args.lut) if args.lut else work / "lut.json"
    if not lut.exists():
        cmd = [sys.executable, ROOT / "tools" / "build_lut.py", "--model", weights, "--imgsz", args.imgsz]
        subprocess.run([str(c) for c in [*cmd, "--backend", "openvino", "--out", lut]], check=True)
    counts = [w if w == "ray" else int(w) for w in args.workers.split(",")]
    if "ray" in counts:  # a local Ray instance of every core: one actor per core
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    walls, outputs = {w: [] for w in counts}, set()
    for r in range(args.repeats):
        for w in counts if r % 2 == 0 else counts[::-1]:
            out = work / f"search_w{w}"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            run_search_job(
                weights,
                data,
                lut,
                out,
                population=args.population,
                generations=args.generations,
                calib_batches=args.calib_batches,
                val_images=args.val_images,
                **({"ray": "auto"} if w == "ray" else {"workers": w}),
            )
            walls[w].append(time.perf_counter() - t)
            outputs.add(tuple((out / f).read_text() for f in ("history.csv", "pareto.csv")))
    evaluated = len((work / f"search_w{counts[0]}" / "history.csv").read_text().splitlines()) - 1
    med = {w: statistics.median(v) for w, v in walls.items()}
    for w in counts:
        print(
            f"{args.population}x{args.generations} search, {w} worker(s): {med[w] / 60:.2f} min "
            f"(runs {', '.join(f'{v / 60:.2f}' for v in walls[w])}), {med[w] / evaluated:.2f} s per evaluated subnet, "
            f"{med[w] / med[counts[0]]:.2f}x the {counts[0]}-worker time"
        )
    print(f"{evaluated} subnets evaluated per search; every run gave the same history and front: {len(outputs) == 1}")
    return {
        "workers": counts,
        "wall_s": walls,
        "median_wall_s": med,
        "ratio_to_first": {w: med[w] / med[counts[0]] for w in counts},
        "evaluated": evaluated,
        "s_per_subnet": {w: med[w] / evaluated for w in counts},
        "identical_results": len(outputs) == 1,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(ROOT / "model_yamls" / "yolov8n-mbconv-supernet.yaml"))
    p.add_argument("--data", help="dataset YAML (default: make the demo dataset)")
    p.add_argument("--lut", help="latency table for --run-search (default: build one)")
    p.add_argument("--calib-batches", type=int, default=2)
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--evals", type=int, default=8)
    p.add_argument("--val", type=int, default=100, help="val images of the demo dataset")
    p.add_argument("--val-images", type=int, help="rank on a subset of the val images (as tools/search.py)")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--run-search", action="store_true")
    p.add_argument(
        "--workers",
        default="1,2",
        help="worker counts for --run-search, compared in one run; 'ray': a local Ray instance",
    )
    p.add_argument("--repeats", type=int, default=2, help="searches per worker count, in alternating order")
    p.add_argument("--work", default="runs/bench_search")
    args = p.parse_args()

    from nas_plugin.evaluation import AccuracyEvaluator
    from nas_plugin.extract import extract
    from nas_plugin.files import write_json
    from nas_plugin.space import random_arch
    from nas_plugin.supernet import load_supernet, space_from_model
    from nas_plugin.synthetic_data import make_dataset

    work = Path(args.work)
    data = (
        Path(args.data)
        if args.data
        else make_dataset(work / "data", train=200, val=args.val, imgsz=args.imgsz, seed=0, exist_ok=True)
    )
    weights = Path(args.weights)
    if weights.suffix != ".pt":  # the untrained YAML needs the dataset's class count
        six = work / "yolov8n-six-supernet.yaml"
        six.write_text(
            Path(ROOT / "model_yamls" / "yolov8-mbconv-supernet.yaml").read_text().replace("nc: 80", "nc: 6", 1)
        )
        weights = six
    supernet = load_supernet(weights)
    space = space_from_model(supernet)
    evaluator = AccuracyEvaluator(
        supernet, data, args.imgsz, work, calib_batches=args.calib_batches, val_images=args.val_images
    )
    parts = {"extract_s": [], "bn_recalibration_s": [], "validation_s": [], "total_s": []}
    for i in range(args.evals):
        arch = random_arch(space, seed=i)
        t0 = time.perf_counter()
        model = extract(supernet, arch)
        t1 = time.perf_counter()
        evaluator.recalibrate(model)
        t2 = time.perf_counter()
        evaluator.validate(model)
        t3 = time.perf_counter()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            parts[k].append(v)
    med = {k: statistics.median(v) for k, v in parts.items()}
    evals = args.population * args.generations
    estimate_min = evals * med["total_s"] / 60
    print(
        f"one evaluation (median of {args.evals}, imgsz {args.imgsz}, {args.val_images or args.val} val images): "
        + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in med.items())
    )
    print(f"estimated {args.population}x{args.generations} search: <= {evals} evaluations -> {estimate_min:.0f} min")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "settings": vars(args),
        "evaluation_median_s": med,
        "search_estimate_min": estimate_min,
    }
    if args.run_search:
        result["searches"] = run_searches(args, weights, data, work)
    result = json.loads(json.dumps(result, default=str))
    out = (
        RESULTS / f"search_{args.population}x{args.generations}.json"
        if args.run_search
        else RESULTS / "search_evaluation.json"
    )
    write_json(out, result)
    print(f"written {out}")


if __name__ == "__main__":
    main()
