#!/usr/bin/env python
"""Run the nas_plugin pipeline end to end on the built-in synthetic dataset (no downloads).

    python tools/demo.py [--out DIR] [--quick]

Steps: make the dataset -> train the supernet with stock Ultralytics -> extract the largest and smallest subnets
as standard YOLO models (BatchNorm recalibrated on training images) -> validate them with stock Ultralytics -> print
a summary. Re-running reuses what exists.
"""

import argparse
from pathlib import Path

from nas_plugin.cli import run

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # dataset size, image size, epochs
    "quick": dict(train=32, val=8, imgsz=64, epochs=1, batch=8),
    "default": dict(train=400, val=100, imgsz=160, epochs=10, batch=16),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/nas_demo", help="output directory (default: runs/nas_demo)")
    p.add_argument("--quick", action="store_true", help="tiny settings that finish in about a minute")
    args = p.parse_args(argv)
    cfg = SETTINGS["quick" if args.quick else "default"]
    out = Path(args.out).resolve()

    from ultralytics import YOLO

    from nas_plugin.calibration import calibration_batches, check_dataset
    from nas_plugin.extract import save_subnet
    from nas_plugin.space import max_arch, min_arch
    from nas_plugin.supernet import load_supernet, space_from_model
    from nas_plugin.synthetic_data import make_dataset

    data = out / "data" / "data.yaml"
    if not data.is_file():
        make_dataset(data.parent, train=cfg["train"], val=cfg["val"], imgsz=cfg["imgsz"], seed=0, exist_ok=True)
    print(f"[1/4] dataset: {data}")

    weights = out / "supernet" / "weights" / "last.pt"
    if not weights.is_file():
        YOLO(str(ROOT / "model_yamls" / "yolov8n-mbconv-supernet.yaml")).train(
            data=str(data), epochs=cfg["epochs"], imgsz=cfg["imgsz"], batch=cfg["batch"], workers=0, device="cpu",
            project=str(out), name="supernet", exist_ok=True,
        )
    print(f"[2/4] supernet: {weights}")

    supernet = load_supernet(weights)
    space = space_from_model(supernet)
    calib = calibration_batches(check_dataset(data, supernet), cfg["imgsz"], cfg["batch"], 4)  # BN per subnet
    rows = []
    for name, arch in (("max", max_arch(space)), ("min", min_arch(space))):
        static = save_subnet(supernet, arch, out / "subnets" / name, source=weights, calib=calib)
        rows.append((name, sum(p.numel() for p in static.parameters()), out / "subnets" / name / "model.pt"))
    print(f"[3/4] subnets: {out / 'subnets'}")

    print("[4/4] validating with stock Ultralytics")
    table = []
    for name, params, model in rows:
        m = YOLO(str(model)).val(data=str(data), imgsz=cfg["imgsz"], batch=cfg["batch"], device="cpu", plots=False, verbose=False, project=str(out), name=f"val_{name}", exist_ok=True)
        table.append(f"{name:>6} {params:>12,} {m.box.map50:>8.3f} {m.box.map:>10.3f}  {model}")
    print(f"\n{'subnet':>6} {'params':>12} {'mAP50':>8} {'mAP50-95':>10}  model\n" + "\n".join(table))
    if args.quick:
        print("\n--quick trains one epoch on 32 images to check the pipeline: an mAP near 0 is expected here.")


if __name__ == "__main__":
    run(main)
