#!/usr/bin/env python
"""Supernet fidelity: do subnets with inherited weights rank (and score) like the same subnets trained alone?

    python benchmarks/bench_fidelity.py [--recipe '{"phases": [["max", 0.4], ["all", 0.6]], "distill": 1.0}']
        [--name NAME] [--preset standard] [--train 400] [--val 100] [--test 200] [--imgsz 160] [--epochs 30]
        [--supernet-epochs 60] [--supernet-seed 0]
        [--k 8] [--seeds 2] [--batch 32] [--jobs 2] [--lut LUT.json] [--work runs/bench_fidelity]
        [--train-args "optimizer=AdamW lr0=0.002"] [--supernet-only]

1. the built-in dataset at `--preset`; 2. the supernet (`--model` with the `--recipe` as its `nas:` block) trained
with stock `yolo train` for `--supernet-epochs`; 3. K fixed subnets: the largest, the smallest and K-2 seeded random
ones nearest to evenly spaced predicted latencies (from `--lut`, or a table built here); 4. each scored with
inherited weights exactly as the search scores it (extract, BN recalibration on `--calib-batches` x 16 training
images, stock validator on the whole val split); 5. each trained alone from its model.yaml for `--epochs` with the
hyperparameters stock YOLOv8n gets here (also trained); the largest and the smallest, and YOLOv8n, once per seed
(`--seeds`), so the seed-to-seed noise is known. Prints Kendall tau and Spearman between inherited and stand-alone
mAP50-95, beside the tau that seed noise alone leaves (Monte Carlo from the repeated trainings), each subnet's
ratio inherited / stand-alone, and the supernet's cost (epochs, CPU minutes); writes
benchmarks/results/fidelity_<name>.json and .png. Trainings run `--jobs` at a time (Ultralytics trains on one core
of this machine); finished ones are reused, interrupted ones resumed, so a second recipe only trains its supernet.
`--train-args` adds stock `yolo train` arguments to every training (their run directories are named after them);
`--supernet-only` stops after steps 1-2 (what `bench_vs_yolo.py` needs).
"""

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

from nas_plugin.run_files import DEFAULT_EPOCHS
from nas_plugin.run_files import YOLO_CLI as YOLO

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def pick_subnets(space, lut, k, seed=0, pool=500):
    """max, min and k-2 seeded random archs nearest to evenly spaced predicted latencies between them."""
    from nas_plugin.lut import predict_us
    from nas_plugin.space import arch_key, max_arch, min_arch, random_arch

    rng = random.Random(seed)
    candidates = [random_arch(space, rng=rng) for _ in range(pool)]
    lat = [predict_us(lut, space, a) for a in candidates]
    lo, hi = predict_us(lut, space, min_arch(space)), predict_us(lut, space, max_arch(space))
    picks, seen = [max_arch(space), min_arch(space)], set()
    seen.update(arch_key(a) for a in picks)
    for j in range(1, k - 1):
        target = lo + j * (hi - lo) / (k - 1)
        order = sorted(range(pool), key=lambda i: abs(lat[i] - target))
        i = next(i for i in order if arch_key(candidates[i]) not in seen)
        seen.add(arch_key(candidates[i]))
        picks.append(candidates[i])
    return [(a, predict_us(lut, space, a) / 1000) for a in picks]


def tau_noise_ceiling(standalone, sigma, draws=2000, seed=0):
    """Median Kendall tau between two stand-alone rankings that differ only by seed noise (N(0, sigma) each)."""
    import numpy as np
    from scipy.stats import kendalltau

    rng = np.random.default_rng(seed)
    x = np.asarray(standalone)
    taus = [kendalltau(x + rng.normal(0, sigma, x.size), x + rng.normal(0, sigma, x.size))[0] for _ in range(draws)]
    return float(np.median(taus))


def plot(rows, stock, path, title):
    from nas_plugin.files import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    xs, ys = [r["standalone_map50_95"] for r in rows], [r["inherited_map50_95"] for r in rows]
    ax.scatter(xs, ys, c=[r["predicted_ms"] for r in rows], cmap="viridis", zorder=3)
    for r in rows:
        ax.annotate(
            r["name"],
            (r["standalone_map50_95"], r["inherited_map50_95"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    top = max(xs + ys + [stock]) * 1.1
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="inherited = stand-alone")
    ax.axvline(stock, color="tab:red", lw=0.8, label="stock YOLOv8n, trained alone")
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="mAP50-95 trained alone",
        ylabel="mAP50-95 inherited from the supernet",
        title=title,
    )
    ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="{}", help="the supernet's nas: block as JSON (default: the plugin's defaults)")
    p.add_argument("--name", default="default", help="names the supernet run and the result files")
    p.add_argument("--model", default=str(ROOT / "model_yamls" / "yolov8n-mbconv-supernet.yaml"))
    p.add_argument("--preset", default="standard")
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--test", type=int, default=200, help="test images, for bench_vs_yolo's figures free of selection")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="stand-alone training epochs (subnets and YOLOv8n)"
    )
    p.add_argument("--supernet-epochs", type=int, default=60)
    p.add_argument("--supernet-seed", type=int, default=0, help="the supernet training's seed (its noise, by --name)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument(
        "--k", type=int, default=8, help="subnets compared (>= 2: max and min; a rank correlation wants >= 8)"
    )
    p.add_argument("--seeds", type=int, default=2, help="seeds for the --repeat models trained alone")
    p.add_argument("--repeat", default="max,min,yolov8n", help="models trained once per seed (the noise floor)")
    p.add_argument("--calib-batches", type=int, help="BN recalibration batches of 16 (default: tools/search.py's)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--lut", help="latency table of the supernet at --imgsz (default: build one with OpenVINO)")
    p.add_argument("--work", default="runs/bench_fidelity")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--train-args", default="", help='yolo train arguments for every training: "key=value ..."')
    p.add_argument("--supernet-only", action="store_true", help="train the supernet only (no table, no subnets)")
    args = p.parse_args(argv)

    import yaml

    from nas_plugin.errors import NASError
    from nas_plugin.evaluation import AccuracyEvaluator
    from nas_plugin.extract import save_subnet
    from nas_plugin.files import write_json
    from nas_plugin.integration import read_model_yaml
    from nas_plugin.lut import load_lut
    from nas_plugin.run_files import (
        final_metrics,
        parse_train_args,
        pending,
        run_name,
        run_trainings,
        stack_versions,
        train_command,
        train_seconds,
    )
    from nas_plugin.supernet import fingerprint, load_supernet, space_from_model
    from nas_plugin.synthetic_data import make_dataset
    from nas_plugin.training import parse_nas_config

    if args.k < 2:
        raise NASError(f"--k must be >= 2 (the largest and the smallest subnet), got {args.k}.")
    recipe = json.loads(args.recipe)
    parse_nas_config(recipe, "--recipe")
    train_args = parse_train_args(args.train_args)
    work = Path(args.work).resolve()

    def alone_dir(name, seed):  # a model trained alone; bench_vs_yolo names its stock runs the same way
        return work / "standalone" / run_name(name, args.epochs, train_args, seed)

    t0 = time.time()
    data = work / "data" / "data.yaml"
    if not data.is_file():
        make_dataset(
            data.parent,
            train=args.train,
            val=args.val,
            test=args.test,
            imgsz=args.imgsz,
            seed=0,
            preset=args.preset,
            exist_ok=True,
        )
    nc = int(yaml.safe_load(data.read_text())["nc"])

    model_cfg = {k: v for k, v in read_model_yaml(args.model).items() if k not in ("yaml_file", "scale")}
    model_cfg.update(nc=nc, nas=recipe)
    supernet_yaml = (
        work / args.name / f"{Path(args.model).stem.split('-')[0]}-{args.name}-supernet.yaml"
    )  # keeps the scale letter
    supernet_yaml.parent.mkdir(parents=True, exist_ok=True)
    supernet_yaml.write_text(yaml.safe_dump(model_cfg, sort_keys=False))
    common = dict(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=0, device="cpu", plots=False)
    common.update(train_args)
    runs = {
        f"supernet {args.name}": train_command(
            YOLO,
            work / args.name / "supernet",
            supernet_yaml,
            data,
            **{**common, "epochs": args.supernet_epochs, "seed": args.supernet_seed},
        )
    }
    if args.supernet_only:
        run_trainings(runs, args.jobs)
        return
    untrained = load_supernet(supernet_yaml)
    space = space_from_model(untrained)

    lut_path = Path(args.lut) if args.lut else work / f"lut_{args.imgsz}.json"
    if not lut_path.is_file():
        cmd = [
            sys.executable,
            ROOT / "tools" / "build_lut.py",
            "--model",
            supernet_yaml,
            "--imgsz",
            args.imgsz,
            "--backend",
            "openvino",
            "--rounds",
            3,
            "--calib-subnets",
            4,
            "--out",
            lut_path,
        ]
        subprocess.run(list(map(str, cmd)), check=True)
    lut = load_lut(lut_path, fingerprint(untrained))
    subnets = pick_subnets(space, lut, args.k)
    names = ["max", "min"] + [f"r{j}" for j in range(1, args.k - 1)]
    for name, (arch, _) in zip(names, subnets):
        if not (work / "subnets" / name / "model.yaml").is_file():
            save_subnet(untrained, arch, work / "subnets" / name)  # the YAML only depends on the arch

    repeated = set(args.repeat.split(","))
    for name in [*names, "yolov8n"]:
        model = "yolov8n.yaml" if name == "yolov8n" else work / "subnets" / name / "model.yaml"
        for seed in range(args.seeds if name in repeated else 1):
            runs[f"{name} seed {seed}"] = train_command(YOLO, alone_dir(name, seed), model, data, **common, seed=seed)
    print(f"trainings ({args.jobs} at a time): {', '.join(pending(runs))}", flush=True)
    run_trainings(runs, args.jobs)

    weights = work / args.name / "supernet" / "weights" / "last.pt"
    evaluator = AccuracyEvaluator(
        load_supernet(weights),
        data,
        args.imgsz,
        work / args.name,
        **({"calib_batches": args.calib_batches} if args.calib_batches else {}),
    )
    inherited = evaluator([arch for arch, _ in subnets])
    alone = {
        name: [final_metrics(alone_dir(name, s))[0] for s in range(args.seeds if name in repeated else 1)]
        for name in [*names, "yolov8n"]
    }

    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    rows = []
    for name, (arch, ms), inh in zip(names, subnets, inherited):
        sa = alone[name][0]
        rows.append(
            {
                "name": name,
                "predicted_ms": round(ms, 3),
                "params_M": round(inh["params"] / 1e6, 3),
                "gflops": round(inh["gflops"], 3),
                "inherited_map50_95": round(inh["map50_95"], 4),
                "standalone_map50_95": round(sa, 4),
                "standalone_seeds": [round(v, 4) for v in alone[name]],
                "ratio": round(inh["map50_95"] / sa, 3) if sa > 0 else None,
                "arch": arch,
            }
        )
    x, y = [r["standalone_map50_95"] for r in rows], [r["inherited_map50_95"] for r in rows]
    tau, spearman = (
        None if np.isnan(v) else float(v) for v in (kendalltau(x, y)[0], spearmanr(x, y)[0])
    )  # nan: a constant side
    pairs = [v for k, v in alone.items() if len(v) > 1]
    sigma = float(np.sqrt(np.mean([np.var(v, ddof=1) for v in pairs]))) if pairs else None
    ceiling = tau_noise_ceiling(x, sigma) if sigma else None
    supernet_s = train_seconds(work / args.name / "supernet")
    standalone_s = {name: train_seconds(alone_dir(name, 0)) for name in [*names, "yolov8n"]}

    print(f"\n{'subnet':>7} {'pred ms':>8} {'params M':>9} {'inherited':>10} {'alone':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['name']:>7} {r['predicted_ms']:>8.2f} {r['params_M']:>9.2f} "
            f"{r['inherited_map50_95']:>10.4f} {r['standalone_map50_95']:>8.4f} {r['ratio'] or float('nan'):>6.2f}"
        )
    print(f"YOLOv8n trained alone: {', '.join(f'{v:.4f}' for v in alone['yolov8n'])} (mAP50-95 by seed)")
    print(
        f"Kendall tau {tau}, Spearman {spearman} over {len(rows)} subnets; "
        f"seed noise sigma {sigma if sigma is None else round(sigma, 4)}"
        f" leaves tau {ceiling if ceiling is None else round(ceiling, 3)}"
    )
    print(
        f"supernet: {args.supernet_epochs} epochs, {supernet_s / 60:.1f} CPU min; "
        f"YOLOv8n alone: {args.epochs} epochs, {standalone_s['yolov8n'] / 60:.1f} CPU min"
    )
    out = Path(args.results)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}",
        "command": " ".join(["python", "benchmarks/bench_fidelity.py", *(argv if argv is not None else sys.argv[1:])]),
        "versions": stack_versions(),
        "settings": vars(args),
        "recipe": parse_nas_config(recipe, "--recipe"),
        "kendall_tau": tau,
        "spearman": spearman,
        "seed_sigma_map50_95": sigma,
        "tau_noise_ceiling": ceiling,
        "subnets": rows,
        "yolov8n_standalone_map50_95": alone["yolov8n"],
        "supernet_epochs": args.supernet_epochs,
        "supernet_cpu_min": round(supernet_s / 60, 1),
        "standalone_cpu_min": {k: round(v / 60, 1) for k, v in standalone_s.items()},
        "wall_s": round(time.time() - t0, 1),
    }
    write_json(out / f"fidelity_{args.name}.json", result)
    plot(
        rows,
        float(np.mean(alone["yolov8n"])),
        out / f"fidelity_{args.name}.png",
        f"{args.name}: Kendall tau {tau if tau is None else round(tau, 2)}, "
        f"Spearman {spearman if spearman is None else round(spearman, 2)}",
    )
    print(f"written {out / f'fidelity_{args.name}.json'} and .png")


if __name__ == "__main__":
    from nas_plugin.cli import run

    run(main, kept="finished trainings are kept and an interrupted one resumes: run the same command again")
