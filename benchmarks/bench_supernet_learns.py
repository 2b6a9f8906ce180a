#!/usr/bin/env python
"""Evidence that one supernet training run trains its subnets: extracted max/min vs untrained vs min trained alone.

    python benchmarks/bench_supernet_learns.py [--train 1000] [--imgsz 128] [--epochs 15] [--batch 16]

1. demo dataset (synthetic, no download); 2. `yolo train` of the supernet (sandwich sampler, stock trainer);
3. the largest and smallest subnets extracted from its best.pt with `tools/extract.py --data` (BN recalibrated on
training images); 4. the same subnets extracted from the untrained supernet; 5. the smallest subnet's YAML trained
alone with the same epochs, batch and nbs (so the same number of optimizer updates). Every model is scored with
the stock Ultralytics validator (`YOLO(pt).val()`, as `yolo val` does). Prints a table and writes benchmarks/results/supernet_learns.json.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "supernet_learns.json"
YOLO = shutil.which("yolo") or str(Path(sys.executable).with_name("yolo"))


def sh(*cmd):
    """Run a command, fail loudly, return its stdout; the wall time is printed."""
    t = time.time()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print(f"  {time.time() - t:7.1f} s  {' '.join(map(str, cmd))[:150]}", flush=True)
    return proc.stdout, time.time() - t


def val(model, data, imgsz, work, name, device):
    """Score a checkpoint with the stock Ultralytics validator (what `yolo val` runs)."""
    from ultralytics import YOLO as Model

    m = Model(str(model)).val(data=str(data), imgsz=imgsz, device=device, plots=False, verbose=False, project=str(work), name=f"val_{name}", exist_ok=True)
    return {"mAP50": round(float(m.box.map50), 4), "mAP50-95": round(float(m.box.map), 4)}


def _gpu():
    import torch

    return f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="training and validation device (e.g. 0 for the first GPU)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="/tmp/nas_bench_learns")
    args = p.parse_args()
    work = Path(args.work)
    common = [f"imgsz={args.imgsz}", f"batch={args.batch}", f"epochs={args.epochs}", "nbs=64", f"workers={args.workers}", f"device={args.device}", "plots=False", f"project={work}", "exist_ok=True", "seed=0"]

    data, _ = sh(sys.executable, ROOT / "tools" / "make_dataset.py", "--out", work / "data", "--train", args.train, "--val", args.val, "--imgsz", args.imgsz, "--exist-ok")
    data = data.strip()
    six = work / "yolov8n-six-supernet.yaml"
    six.write_text((ROOT / "model_yamls" / "yolov8-mbconv-supernet.yaml").read_text().replace("nc: 80", "nc: 6", 1))

    _, t_super = sh(YOLO, "train", f"model={six}", f"data={data}", *common, "name=supernet")
    best = work / "supernet" / "weights" / "best.pt"
    rows, times = {}, {"supernet_train_s": round(t_super, 1)}
    for arch in ("max", "min"):
        sh(sys.executable, ROOT / "tools" / "extract.py", "--weights", best, "--arch", arch, "--data", data, "--imgsz", args.imgsz, "--out", work / f"trained_{arch}")
        rows[f"{arch} subnet, from the trained supernet"] = val(work / f"trained_{arch}" / "model.pt", data, args.imgsz, work, f"trained_{arch}", args.device)
        sh(sys.executable, ROOT / "tools" / "extract.py", "--weights", six, "--arch", arch, "--out", work / f"untrained_{arch}")
        rows[f"{arch} subnet, untrained"] = val(work / f"untrained_{arch}" / "model.pt", data, args.imgsz, work, f"untrained_{arch}", args.device)
    _, t_alone = sh(YOLO, "train", f"model={work / 'trained_min' / 'model.yaml'}", f"data={data}", *common, "name=min_alone")
    times["min_alone_train_s"] = round(t_alone, 1)
    rows["min subnet trained alone (same updates)"] = val(work / "min_alone" / "weights" / "best.pt", data, args.imgsz, work, "min_alone", args.device)

    print(f"\n{'model':<44} {'mAP50':>7} {'mAP50-95':>9}")
    for name, r in rows.items():
        print(f"{name:<44} {r['mAP50']:7.3f} {r['mAP50-95']:9.3f}")
    print(f"supernet training {times['supernet_train_s']:.0f} s, min alone {times['min_alone_train_s']:.0f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs" + _gpu(),
        "settings": vars(args), "results": rows, "times": times,
    }, indent=2) + "\n")  # fmt: skip
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
