#!/usr/bin/env python
"""Run the whole nas_plugin pipeline on the built-in synthetic dataset (no downloads), as a user would.

    python tools/demo.py [--out DIR] [--quick] [--model SUPERNET.yaml] [--latency-budget MS]

Steps, each the command a user would type (printed before it runs): make the dataset -> train the supernet with
stock `yolo train` -> build an OpenVINO CPU f32 latency table -> validate it against whole subnets -> NSGA-II
search under a latency budget -> fine-tune the best subnet with stock `yolo train` -> export it to ONNX and
OpenVINO with stock `yolo export` -> a summary of the best subnet vs the largest and smallest (accuracy, predicted
and measured latency), written to DIR/summary.json. Re-running skips the finished steps and resumes the others.
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from nas_plugin.cli import run
from nas_plugin.run_files import YOLO_CLI

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "quick": dict(
        train=32,
        val=8,
        imgsz=64,
        batch=8,
        nbs=32,
        epochs=1,
        lut_rounds=1,
        lut_calib=2,
        val_samples=3,
        val_rounds=3,
        population=6,
        generations=2,
        finetune_epochs=1,
        latency_rounds=5,
    ),
    "default": dict(
        train=400,
        val=100,
        imgsz=128,
        batch=16,
        nbs=64,
        epochs=25,
        lut_rounds=3,
        lut_calib=8,
        val_samples=10,
        val_rounds=10,
        population=20,
        generations=5,
        finetune_epochs=5,
        latency_rounds=15,
    ),
}


def sh(*cmd):
    """Run one step's command as a user would, echoing it; a failing step stops the demo with its exit status."""
    cmd = [str(c) for c in cmd]
    shown = {sys.executable: "python", YOLO_CLI: "yolo"}
    print("  $ " + " ".join(shown.get(c, c) for c in cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code:
        raise SystemExit(code)


def yolo_train(run_dir, model, data, cfg, epochs):
    """Stock `yolo train`, resumed when an earlier run of the demo was interrupted."""
    from nas_plugin.run_files import train_command

    cmd = train_command(
        YOLO_CLI,
        run_dir,
        model,
        data,
        epochs=epochs,
        imgsz=cfg["imgsz"],
        batch=cfg["batch"],
        nbs=cfg["nbs"],
        workers=0,
        device="cpu",
    )
    if cmd:
        sh(*cmd)


def search_row(search_dir, arch):
    """The search's record of `arch`: its front entry (scored on the whole val split) if it has one, else
    history.csv."""
    front = json.loads((search_dir / "pareto.json").read_text())["front"]
    in_front = [r for r in front if r["arch"] == arch]
    if in_front:
        return in_front[0]
    with open(search_dir / "history.csv") as f:
        return next(r for r in csv.DictReader(f) if json.loads(r["arch"]) == arch)


def summary(out, cfg, supernet_pt, best_dir, finetune_dir, budget):
    """Best subnet vs max and min: accuracy, predicted (table) and measured (whole model, interleaved) latency."""
    from nas_plugin.files import write_json
    from nas_plugin.lut import load_lut, predict_us
    from nas_plugin.run_files import final_metrics
    from nas_plugin.space import max_arch, min_arch
    from nas_plugin.supernet import fingerprint, load_supernet, space_from_model
    from nas_plugin.timing import backend_for, measure_subnets

    supernet = load_supernet(supernet_pt)
    space = space_from_model(supernet)
    lut = load_lut(out / "lut.json", fingerprint(supernet))
    named = {"best": json.loads((best_dir / "arch.json").read_text()), "max": max_arch(space), "min": min_arch(space)}
    measured = measure_subnets(
        supernet, list(named.values()), lut, backend_for(lut), rounds=cfg["latency_rounds"], desc="best, max, min"
    )
    rows = []
    for (name, arch), stats in zip(named.items(), measured):
        h = search_row(out / "search", arch)
        rows.append(
            {
                "subnet": name,
                "params_M": int(h["params"]) / 1e6,
                "gflops": float(h["gflops"]),
                "map50_95": float(h["map50_95"]),
                "map50": float(h["map50"]),
                "predicted_ms": predict_us(lut, space, arch) / 1000,
                "measured_ms": stats["median_us"] / 1000,
            }
        )
    map50_95, map50 = final_metrics(finetune_dir)
    rows.append({**rows[0], "subnet": "best, fine-tuned", "map50_95": map50_95, "map50": map50})
    print(
        f"\nSummary (OpenVINO CPU f32, imgsz {cfg['imgsz']}, latency budget {budget:.2f} ms; "
        "subnets scored with inherited weights and recalibrated BN):"
    )
    print(
        f"{'subnet':>17} {'params(M)':>9} {'GFLOPs':>7} {'mAP50-95':>9} "
        f"{'mAP50':>7} {'predicted ms':>12} {'measured ms':>11}"
    )
    for r in rows:
        print(
            f"{r['subnet']:>17} {r['params_M']:>9.2f} {r['gflops']:>7.2f} {r['map50_95']:>9.4f} "
            f"{r['map50']:>7.4f} {r['predicted_ms']:>12.2f} {r['measured_ms']:>11.2f}"
        )
    plots = {
        "supernet training": out / "supernet" / "results.png",
        "latency table validation": out / "lut_validation" / "lut_validation.png",
        "search front": out / "search" / "pareto.png",
        "fine-tuning": finetune_dir / "results.png",
    }
    print("\nPlots:\n" + "\n".join(f"  {k}: {v}" for k, v in plots.items() if v.exists()))
    write_json(
        out / "summary.json",
        {"settings": cfg, "latency_budget_ms": budget, "rows": rows, "plots": {k: str(v) for k, v in plots.items()}},
    )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/nas_demo", help="output directory (default: runs/nas_demo)")
    p.add_argument("--quick", action="store_true", help="tiny settings that check the pipeline in a few minutes")
    p.add_argument(
        "--model", default=str(ROOT / "model_yamls" / "yolov8n-csp-supernet.yaml"), help="supernet model YAML"
    )
    p.add_argument(
        "--latency-budget",
        type=float,
        help="search budget in ms (default: halfway between the smallest and largest subnet)",
    )
    args = p.parse_args(argv)
    cfg = SETTINGS["quick" if args.quick else "default"]
    out = Path(args.out).resolve()
    t0 = time.time()

    def step(n, title):
        print(f"\n[{n}/8] {title} ({time.time() - t0:.0f} s)", flush=True)

    data = out / "data" / "data.yaml"
    step(1, "synthetic dataset")
    if not data.is_file():
        sh(
            sys.executable,
            ROOT / "tools" / "make_dataset.py",
            "--out",
            data.parent,
            "--train",
            cfg["train"],
            "--val",
            cfg["val"],
            "--imgsz",
            cfg["imgsz"],
            "--preset",
            "easy",
            "--exist-ok",
        )

    step(2, "supernet training (stock yolo train, subnets sampled per batch)")
    yolo_train(out / "supernet", args.model, data, cfg, cfg["epochs"])
    supernet_pt = out / "supernet" / "weights" / "last.pt"

    step(3, "latency table, OpenVINO CPU f32")
    lut = out / "lut.json"
    sh(
        sys.executable,
        ROOT / "tools" / "build_lut.py",
        "--model",
        supernet_pt,
        "--imgsz",
        cfg["imgsz"],
        "--backend",
        "openvino",
        "--rounds",
        cfg["lut_rounds"],
        "--calib-subnets",
        cfg["lut_calib"],
        "--out",
        lut,
        "--resume",
    )

    step(4, "latency table vs whole subnets measured end to end")
    if not (out / "lut_validation" / "lut_validation.json").is_file():
        sh(
            sys.executable,
            ROOT / "tools" / "validate_lut.py",
            "--lut",
            lut,
            "--model",
            supernet_pt,
            "--samples",
            cfg["val_samples"],
            "--rounds",
            cfg["val_rounds"],
            "--out",
            out / "lut_validation",
        )

    step(5, "NSGA-II search (accuracy x latency)")
    budget = args.latency_budget or default_budget(supernet_pt, lut)
    search = out / "search"
    if not (search / "best" / "model.pt").is_file():
        sh(
            sys.executable,
            ROOT / "tools" / "search.py",
            "--weights",
            supernet_pt,
            "--data",
            data,
            "--lut",
            lut,
            "--latency-budget",
            f"{budget:.3f}",
            "--population",
            cfg["population"],
            "--generations",
            cfg["generations"],
            "--out",
            search,
            *(["--resume"] if (search / "history.csv").exists() else []),
        )

    step(6, "fine-tune the best subnet from its inherited weights (stock yolo train)")
    finetune = out / "finetune"
    yolo_train(finetune, search / "best" / "model.pt", data, cfg, cfg["finetune_epochs"])

    step(7, "export the fine-tuned subnet (stock yolo export)")
    best_pt = finetune / "weights" / "best.pt"
    for fmt, path in (("onnx", best_pt.with_suffix(".onnx")), ("openvino", best_pt.parent / "best_openvino_model")):
        if not path.exists():
            sh(YOLO_CLI, "export", f"model={best_pt}", f"format={fmt}", f"imgsz={cfg['imgsz']}")

    step(8, "summary")
    summary(out, cfg, supernet_pt, search / "best", finetune, budget)
    print(f"\nDeploy it like any YOLO model: yolo predict model={best_pt.parent / 'best_openvino_model'} source=...")
    print(f"Done in {time.time() - t0:.0f} s; everything is in {out}")
    if args.quick:
        print("--quick trains one epoch on 32 images to check the pipeline: accuracies near 0 are expected here.")


def default_budget(supernet_pt, lut_path):
    """Halfway between the smallest and the largest subnet's predicted latency."""
    from nas_plugin.lut import load_lut, predict_us
    from nas_plugin.space import max_arch, min_arch
    from nas_plugin.supernet import fingerprint, load_supernet, space_from_model

    supernet = load_supernet(supernet_pt)
    space = space_from_model(supernet)
    lut = load_lut(lut_path, fingerprint(supernet))
    return (predict_us(lut, space, min_arch(space)) + predict_us(lut, space, max_arch(space))) / 2000


if __name__ == "__main__":
    run(main, kept="finished steps are kept: run the same command again to skip them and resume the interrupted one")
