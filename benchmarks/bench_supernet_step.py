#!/usr/bin/env python
"""Time per optimizer update and peak memory of supernet training vs stock training of static subnets.

    python benchmarks/bench_supernet_step.py [--imgsz 160] [--batch 16] [--images 160] [--epochs 2] [--randoms 3]

Every configuration trains with the stock Ultralytics trainer in its own process (so peak RSS is its own) on the
demo dataset, with nbs = 4 x batch (4 batches per optimizer update). A callback times each batch from
`on_train_batch_start` to `on_train_batch_end` (forward, backward, optimizer; not data loading); the first update is
dropped as warm-up. Static subnets are the extracted max, min and `--randoms` random subnets, trained from their
YAMLs; the supernet runs `uniform`, `sandwich` and `sandwich` + distillation. Targets: uniform <= 1.10 x static max,
sandwich <= 1.10 x (static max + static min + 2 x mean static random). The random subnets a sandwich trains are not
the static ones timed (random subnets differ in cost by up to ~1.5x), so the exact elastic overhead is also given
per kind for max and min, whose archs are the same in both. Prints a table, writes
benchmarks/results/supernet_step.json.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "supernet_step.json"
ACCUMULATE = 4


def worker(args):
    """Train one configuration; print {'batch_s': [...], 'kinds': [...], 'max_rss_mb': ...} as JSON on the last line."""
    from ultralytics import YOLO

    times, kinds, start = [], [], {}

    def t0(trainer):
        start["t"] = time.perf_counter()

    def t1(trainer):
        times.append(time.perf_counter() - start["t"])
        kinds.append(trainer.nas.kind if hasattr(trainer, "nas") else "static")

    model = YOLO(args.model)
    model.add_callback("on_train_batch_start", t0)
    model.add_callback("on_train_batch_end", t1)
    model.train(
        data=args.data,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        nbs=args.batch * ACCUMULATE,
        workers=0,
        device="cpu",
        plots=False,
        val=False,
        project=args.project,
        name=Path(args.model).stem,
        exist_ok=True,
        verbose=False,
        warmup_epochs=0,
        seed=0,
    )
    print(
        json.dumps(
            {"batch_s": times, "kinds": kinds, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        )
    )


def run_config(model, args, work):
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        str(model),
        "--data",
        str(work / "data" / "data.yaml"),
        "--project",
        str(work / "runs"),
    ] + [f"--{k}={getattr(args, k)}" for k in ("imgsz", "batch", "epochs")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    res = json.loads(out)
    updates = [
        sum(res["batch_s"][i : i + ACCUMULATE]) for i in range(0, len(res["batch_s"]) - ACCUMULATE + 1, ACCUMULATE)
    ]
    per_kind = {}
    for kind, t in list(zip(res["kinds"], res["batch_s"]))[ACCUMULATE:]:  # first update is warm-up
        per_kind.setdefault(kind, []).append(t)
    return {
        "update_s_median": statistics.median(updates[1:]),
        "updates": len(updates) - 1,
        "batch_s_median_by_kind": {k: statistics.median(v) for k, v in per_kind.items()},
        "max_rss_mb": res["max_rss_mb"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--images", type=int, default=160, help="training images in the demo dataset")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--randoms", type=int, default=3, help="static random subnets timed for the sandwich's expected cost"
    )
    p.add_argument("--work", default="/tmp/nas_bench_step")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--project", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    from nas_plugin.extract import save_subnet
    from nas_plugin.space import max_arch, min_arch, random_arch
    from nas_plugin.supernet import load_supernet, space_from_model
    from nas_plugin.synthetic_data import make_dataset

    work = Path(args.work)
    make_dataset(work / "data", train=args.images, val=8, imgsz=args.imgsz, seed=0, exist_ok=True)
    supernet_yaml = (ROOT / "model_yamls" / "yolov8-mbconv-supernet.yaml").read_text()
    supernet = load_supernet(ROOT / "model_yamls" / "yolov8n-mbconv-supernet.yaml")
    space = space_from_model(supernet)
    configs = {}
    for name, arch in [("max", max_arch(space)), ("min", min_arch(space))] + [
        (f"random{i}", random_arch(space, seed=i)) for i in range(args.randoms)
    ]:
        save_subnet(supernet, arch, work / "static" / name, exist_ok=True)
        configs[f"static {name}"] = work / "static" / name / "model.yaml"
    for name, block in [
        ("uniform", "sampler: uniform"),
        ("sandwich", "sampler: sandwich"),
        ("sandwich+distill", "sampler: sandwich\n  distill: 1.0"),
    ]:
        path = work / "supernets" / f"yolov8n-{name.replace('+', '-')}-supernet.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(supernet_yaml.replace("nc: 80", f"nas:\n  {block}\nnc: 80", 1))
        configs[f"supernet {name}"] = path

    results = {}
    for label, model in configs.items():
        results[label] = run_config(model, args, work)
        print(
            f"{label:<26} {results[label]['update_s_median'] * 1000:9.0f} ms/update  "
            f"{results[label]['max_rss_mb']:7.0f} MB peak RSS",
            flush=True,
        )

    static = {k.split()[1]: v["update_s_median"] / ACCUMULATE for k, v in results.items() if k.startswith("static")}
    mean_random = statistics.mean(v for k, v in static.items() if k.startswith("random"))
    sandwich_static = static["max"] + static["min"] + 2 * mean_random  # one batch of each, as one sandwich update
    sandwich_kinds = results["supernet sandwich"]["batch_s_median_by_kind"]
    ratios = {
        "uniform / static max": results["supernet uniform"]["update_s_median"]
        / results["static max"]["update_s_median"],
        "sandwich max batch / static max batch": sandwich_kinds["max"] / static["max"],
        "sandwich min batch / static min batch": sandwich_kinds["min"] / static["min"],
        "sandwich / sum of its static subnets": results["supernet sandwich"]["update_s_median"] / sandwich_static,
        "sandwich+distill / sum of its static subnets": results["supernet sandwich+distill"]["update_s_median"]
        / sandwich_static,
        "sandwich / static max": results["supernet sandwich"]["update_s_median"]
        / results["static max"]["update_s_median"],
    }
    print("\nratios (same run):")
    for k, v in ratios.items():
        print(f"  {k:<46} {v:5.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "settings": {k: getattr(args, k) for k in ("imgsz", "batch", "images", "epochs", "randoms")}
                | {"accumulate": ACCUMULATE},
                "results": results,
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
