#!/usr/bin/env python
"""Searched subnets vs stock YOLOv8 on the demo dataset: mAP50-95 against OpenVINO CPU f32 latency.

    python benchmarks/bench_vs_yolo.py [--search runs/nas_demo/search] [--data runs/nas_demo/data/data.yaml]
        [--epochs 20] [--batch 8] [--nbs 32] [--front 2] [--jobs 2] [--rounds 20] [--work runs/bench_vs_yolo]

Every model is trained with one budget (same epochs and hyperparameters, stock `yolo train`; --jobs trainings at
once, since Ultralytics trains on one thread of a 2-core CPU): stock YOLOv8n and a
smaller YOLOv8 scaling (depth 0.33, width 0.125) from their YAMLs, and `--front` members of a finished search
(`tools/demo.py` makes one; the fastest and the most accurate within budget), each fine-tuned from its inherited
weights and trained from scratch from its model.yaml. Each trained best.pt is then scored with stock `val` and
exported the same way (fused, ONNX, OpenVINO CPU f32) and timed in interleaved rounds against YOLOv8n in one run.
Writes benchmarks/results/vs_yolo.{json,png}. Finished trainings are reused when re-run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def stock_yaml(work, scale):
    """YOLOv8 at (depth, width) multiples from Ultralytics' own yolov8.yaml."""
    import yaml
    from ultralytics.utils import ROOT as UL

    cfg = yaml.safe_load((UL / "cfg" / "models" / "v8" / "yolov8.yaml").read_text())
    cfg.pop("scales")
    cfg["depth_multiple"], cfg["width_multiple"] = scale
    path = work / f"yolov8-d{scale[0]}-w{scale[1]}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def pick_front(search, k):
    """`k` front members spread over latency, always with the most accurate (the search's best/)."""
    front = json.loads((search / "pareto.json").read_text())["front"]
    best = json.loads((search / "best" / "arch.json").read_text())
    order = sorted(range(len(front)), key=lambda i: front[i]["latency_ms"])
    picks = [order[round(j * (len(order) - 1) / max(k - 1, 1))] for j in range(min(k, len(order)))]
    i_best = next(i for i, r in enumerate(front) if r["arch"] == best)
    if i_best not in picks:
        picks[-1] = i_best
    return sorted(set(picks))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--search", default="runs/nas_demo/search", help="a finished tools/search.py output directory")
    p.add_argument("--data", default="runs/nas_demo/data/data.yaml", help="the dataset the search used")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--nbs", type=int, default=32)
    p.add_argument("--front", type=int, default=2, help="front members to train (fastest .. most accurate)")
    p.add_argument("--jobs", type=int, default=2, help="trainings run at once (each logs to WORK/<model>.log)")
    p.add_argument("--rounds", type=int, default=20, help="interleaved latency rounds")
    p.add_argument("--work", default="runs/bench_vs_yolo")
    args = p.parse_args()

    from ultralytics import YOLO

    from nas_plugin.backends import get_backend, timing_stats
    from nas_plugin.files import write_json
    from nas_plugin.lut_build import measure_interleaved, model_onnx
    from nas_plugin.run_files import train_done

    search, work = Path(args.search), Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    imgsz = json.loads((search / "search_args.json").read_text())["imgsz"]
    models = {  # name -> (kind, what to train)
        "YOLOv8n": ("stock, from scratch", stock_yaml(work, (0.33, 0.25))),
        "YOLOv8 d0.33 w0.125": ("stock, from scratch", stock_yaml(work, (0.33, 0.125))),
    }
    for i in pick_front(search, args.front):
        models[f"front/{i} fine-tuned"] = ("searched, inherited weights", search / "front" / str(i) / "model.pt")
        models[f"front/{i} scratch"] = ("searched, from scratch", search / "front" / str(i) / "model.yaml")

    run_dirs = {name: work / name.replace("/", "_").replace(" ", "_") for name in models}
    todo = [name for name in models if not train_done(run_dirs[name])]
    yolo_cli = Path(sys.executable).with_name("yolo")
    procs = []
    for name in todo:  # finished runs are reused; an interrupted one is trained again from its start
        while sum(p.poll() is None for p in procs) >= args.jobs:
            time.sleep(5)
        cmd = [yolo_cli, "train", f"model={models[name][1]}", f"data={args.data}", f"epochs={args.epochs}", f"imgsz={imgsz}",
               f"batch={args.batch}", f"nbs={args.nbs}", "workers=0", "device=cpu", f"project={work}", f"name={run_dirs[name].name}", "exist_ok=True"]  # fmt: skip
        print(f"training {name}: log in {run_dirs[name]}.log", flush=True)
        with open(f"{run_dirs[name]}.log", "w") as log:
            procs.append(subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT))
    if any(p.wait() for p in procs) or not all(train_done(d) for d in run_dirs.values()):
        raise SystemExit(f"a training failed; see the logs in {work}")

    rows, nets = [], []
    for name, (kind, source) in models.items():
        model = YOLO(str(run_dirs[name] / "weights" / "best.pt"))
        nets.append(model.model)
        m = model.val(data=str(args.data), imgsz=imgsz, batch=16, device="cpu", plots=False, verbose=False, project=str(work), name=f"val_{run_dirs[name].name}", exist_ok=True)
        rows.append({
            "model": name, "kind": kind, "source": str(source), "params_M": sum(q.numel() for q in model.model.parameters()) / 1e6,
            "map50_95": float(m.box.map), "map50": float(m.box.map50), "weights": str(run_dirs[name] / "weights" / "best.pt"),
        })  # fmt: skip

    backend = get_backend("openvino", "CPU", "f32")
    with tempfile.TemporaryDirectory() as tmp:
        onnx = []
        for net in nets:
            path = str(Path(tmp) / f"{len(onnx)}.onnx")
            onnx.append((path, model_onnx(net.float(), imgsz, 1, path)))
        ref = backend.compile(*onnx[0])  # YOLOv8n: every model is timed relative to it in the same rounds
        ref_us = timing_stats(ref.time(warmup=20, repeats=200), 20)["median_us"]
        stats = measure_interleaved(backend, onnx, (ref, ref_us), rounds=args.rounds)
    for r, s in zip(rows, stats):
        r.update(latency_ms=s["median_us"] / 1000, latency_iqr_ms=s["iqr_us"] / 1000)
    v8n = rows[0]
    for r in rows:
        r.update(latency_vs_v8n=r["latency_ms"] / v8n["latency_ms"], map50_95_vs_v8n=r["map50_95"] - v8n["map50_95"])

    print(f"\nOpenVINO {backend.info['version']} CPU f32 ({backend.info['device_name']}), imgsz {imgsz}, {args.epochs} epochs each, batch {args.batch}, nbs {args.nbs}")
    print(f"{'model':>22} {'kind':>28} {'params(M)':>9} {'mAP50-95':>9} {'mAP50':>7} {'latency ms':>10} {'x v8n':>6}")
    for r in rows:
        print(f"{r['model']:>22} {r['kind']:>28} {r['params_M']:>9.2f} {r['map50_95']:>9.4f} {r['map50']:>7.4f} {r['latency_ms']:>10.3f} {r['latency_vs_v8n']:>6.2f}")
    wins = [r for r in rows if r["kind"].startswith("searched") and r["latency_ms"] <= v8n["latency_ms"] and r["map50_95"] > v8n["map50_95"]]
    claim = f"met by {', '.join(r['model'] for r in wins)}" if wins else "not met"
    print(f"claim (a searched model at <= YOLOv8n's latency with higher mAP50-95): {claim}")
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {backend.info['device_name']}",
        "settings": vars(args) | {"imgsz": imgsz}, "rows": rows, "claim": claim,
    }  # fmt: skip
    write_json(RESULTS / "vs_yolo.json", result)
    plot(rows, RESULTS / "vs_yolo.png", f"demo data, imgsz {imgsz}, {args.epochs} epochs each; OpenVINO CPU f32")
    print(f"written {RESULTS / 'vs_yolo.json'} and vs_yolo.png")


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas_plugin.files import atomic_path

    markers = {"stock, from scratch": ("s", "tab:grey"), "searched, inherited weights": ("o", "tab:blue"), "searched, from scratch": ("^", "tab:orange")}
    fig, ax = plt.subplots(figsize=(7, 5))
    for kind, (marker, colour) in markers.items():
        sel = [r for r in rows if r["kind"] == kind]
        ax.scatter([r["latency_ms"] for r in sel], [r["map50_95"] for r in sel], marker=marker, color=colour, label=kind, s=50)
        for r in sel:
            ax.annotate(r["model"], (r["latency_ms"], r["map50_95"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axvline(rows[0]["latency_ms"], color="tab:grey", ls="--", lw=0.8)
    ax.set(xlabel="latency (ms, median of interleaved rounds)", ylabel="mAP50-95 (val)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
