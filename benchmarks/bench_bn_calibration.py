#!/usr/bin/env python
"""How many training images BatchNorm recalibration needs before the search's ranking of subnets stops changing.

    python benchmarks/bench_bn_calibration.py --weights SUPERNET.pt [--work runs/bench_fidelity] [--subnets 16]
        [--sizes 32 64 128 256 512] [--reference 1024] [--preset standard]

Each of `--subnets` subnets (max, min and seeded random ones) is extracted, recalibrated on N training images
(N in `--sizes`, batches of 16, as `tools/search.py --calib-batches N/16` does) and scored by the stock validator on
the whole val split of WORK/data; the ranking at each N is compared (Kendall tau) with the ranking after
`--reference` images. The calibration images come from the dataset's own generator (same preset and seed: the first
images are the training set's, the rest more of the same), so the reference can exceed the training split. Prints
tau, the mean absolute mAP change and the seconds per recalibration for each N; writes
benchmarks/results/bn_calibration.json.
"""

import argparse
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="trained supernet checkpoint")
    p.add_argument("--work", default="runs/bench_fidelity", help="holds data/data.yaml (bench_fidelity.py's --work)")
    p.add_argument("--preset", default="standard", help="the preset WORK/data was made with")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--subnets", type=int, default=16)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--reference", type=int, default=1024)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    import numpy as np
    import yaml
    from scipy.stats import kendalltau

    from nas_plugin.evaluation import VAL_BATCH, AccuracyEvaluator
    from nas_plugin.extract import extract
    from nas_plugin.files import write_json, write_text
    from nas_plugin.space import max_arch, min_arch, random_arch
    from nas_plugin.supernet import load_supernet, space_from_model
    from nas_plugin.synthetic_data import make_dataset

    work = Path(args.work).resolve()
    data = yaml.safe_load((work / "data" / "data.yaml").read_text())
    calib_dir = work / f"calibration_{args.reference}"
    if not (calib_dir / "data.yaml").is_file():
        make_dataset(
            calib_dir, train=args.reference, val=1, imgsz=args.imgsz, seed=0, preset=args.preset, exist_ok=True
        )
    mixed = {**yaml.safe_load((calib_dir / "data.yaml").read_text()), "val": str(Path(data["path"]) / data["val"])}
    mixed_yaml = calib_dir / "calib_train_real_val.yaml"
    write_text(mixed_yaml, yaml.safe_dump(mixed, sort_keys=False))

    supernet = load_supernet(args.weights)
    space = space_from_model(supernet)
    archs = [max_arch(space), min_arch(space)] + [random_arch(space, seed=100 + i) for i in range(args.subnets - 2)]
    scores, seconds = {}, {}
    for n in [*args.sizes, args.reference]:
        evaluator = AccuracyEvaluator(supernet, mixed_yaml, args.imgsz, calib_dir, calib_batches=n // VAL_BATCH)
        maps, times = [], []
        for arch in archs:
            model = extract(supernet, arch)
            t = time.perf_counter()
            evaluator.recalibrate(model)
            times.append(time.perf_counter() - t)
            maps.append(evaluator.validate(model)[1])
        scores[n], seconds[n] = maps, float(np.median(times))
        print(f"{n:5d} images: recalibration {seconds[n]:.2f} s per subnet", flush=True)

    ref = scores[args.reference]
    rows = []
    print(
        f"\n{'images':>6} {'Kendall tau vs ' + str(args.reference):>20} "
        f"{'mean |dmAP50-95|':>17} {'s / recalibration':>18}"
    )
    for n in args.sizes:
        tau = float(kendalltau(scores[n], ref)[0])
        diff = float(np.mean(np.abs(np.subtract(scores[n], ref))))
        rows.append(
            {
                "images": n,
                "kendall_tau": round(tau, 3),
                "mean_abs_diff_map50_95": round(diff, 4),
                "seconds": round(seconds[n], 3),
            }
        )
        print(f"{n:>6} {tau:>20.3f} {diff:>17.4f} {seconds[n]:>18.2f}")
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "settings": vars(args),
        "reference_seconds": seconds[args.reference],
        "rows": rows,
        "map50_95": {str(k): v for k, v in scores.items()},
    }
    write_json(Path(args.results) / "bn_calibration.json", result)
    print(f"written {Path(args.results) / 'bn_calibration.json'}")


if __name__ == "__main__":
    from nas_plugin.cli import run

    run(main)
