#!/usr/bin/env python
"""How far each supernet's subnets reach below and above stock YOLO's latency, at each image size.

    python benchmarks/bench_range.py [--imgsz 160 640] [--scales n s] [--nc 6] [--samples 8] [--rounds 8]

Per scale and image size: the smallest, the largest and --samples random subnets of the CSP and the MBConv supernet
(--nc classes), and stock YOLOv8, YOLO11 and YOLO26 of that scale, are exported as deployed (fused, ONNX) and timed
on OpenVINO CPU f32 in interleaved rounds in one run, each relative to YOLOv8 of that scale timed in the same rounds.
Prints latency and GFLOPs relative to YOLOv8's; writes benchmarks/results/range.json and range.png.
"""

import argparse
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SUPERNETS = {"csp": "yolov8{}-csp-supernet.yaml", "mbconv": "yolov8{}-mbconv-supernet.yaml"}
STOCK = ("yolov8", "yolo11", "yolo26")


def models_of_scale(scale, nc, samples, seed):
    """[(group, label, static model)]: stock models first (YOLOv8 is the yardstick), then each supernet's subnets."""
    from nas_plugin import space as S
    from nas_plugin.extract import extract
    from nas_plugin.integration import detection_model, read_model_yaml
    from nas_plugin.supernet import space_from_model

    out = [
        ("stock", f"{name}{scale}", detection_model({**read_model_yaml(f"{name}{scale}.yaml"), "nc": nc}))
        for name in STOCK
    ]
    rng = random.Random(seed)
    for group, pattern in SUPERNETS.items():
        supernet = detection_model({**read_model_yaml(ROOT / "model_yamls" / pattern.format(scale)), "nc": nc})
        space = space_from_model(supernet)
        archs = [("min", S.min_arch(space)), ("max", S.max_arch(space))]
        archs += [("random", S.random_arch(space, rng=rng)) for _ in range(samples)]
        out += [(group, label, extract(supernet, arch)) for label, arch in archs]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, nargs="+", default=[160, 640])
    p.add_argument("--scales", nargs="+", default=["n", "s"])
    p.add_argument("--nc", type=int, default=6, help="class count of every model (the benchmark preset's)")
    p.add_argument("--samples", type=int, default=8, help="random subnets per supernet")
    p.add_argument("--rounds", type=int, default=8, help="interleaved latency rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)

    from nas_plugin.backends import get_backend
    from nas_plugin.files import write_json
    from nas_plugin.integration import gflops
    from nas_plugin.timing import measure_against_first, run_record

    backend = get_backend("openvino")
    rows = []
    for scale in args.scales:
        models = models_of_scale(scale, args.nc, args.samples, args.seed)
        for imgsz in args.imgsz:
            flops = [gflops(m, imgsz) for _, _, m in models]
            # YOLOv8 of this scale first: 1000 = its latency in the same rounds
            stats = measure_against_first(backend, [m for _, _, m in models], imgsz, args.rounds)
            for (group, label, _), s, g in zip(models, stats, flops):
                rows.append(
                    {
                        "scale": scale,
                        "imgsz": imgsz,
                        "group": group,
                        "model": label,
                        "latency_vs_yolov8": round(s["median_us"] / 1000, 3),
                        "gflops": round(g, 3),
                        "gflops_vs_yolov8": round(g / flops[0], 3),
                    }
                )
            report(rows, scale, imgsz)
    result = {
        **run_record("benchmarks/bench_range.py", argv, backend),
        "backend": f"OpenVINO {backend.info['version']} CPU f32, batch 1",
        "settings": vars(args),
        "rows": rows,
    }
    out = Path(args.results)
    write_json(out / "range.json", result)
    plot(rows, args, out / "range.png")
    print(f"written {out / 'range.json'} and .png")


def report(rows, scale, imgsz):
    here = [r for r in rows if r["scale"] == scale and r["imgsz"] == imgsz]
    print(f"\nscale {scale}, imgsz {imgsz}: latency and GFLOPs relative to yolov8{scale}")
    for r in here:
        if r["group"] == "stock":
            print(f"  {r['model']:>10}: latency {r['latency_vs_yolov8']:.2f}x, GFLOPs {r['gflops_vs_yolov8']:.2f}x")
    for group in SUPERNETS:
        sub = [r for r in here if r["group"] == group]
        lo, hi = (next(r for r in sub if r["model"] == m) for m in ("min", "max"))
        rand = sorted(r["latency_vs_yolov8"] for r in sub if r["model"] == "random")
        print(
            f"  {group:>10}: smallest {lo['latency_vs_yolov8']:.2f}x ({lo['gflops_vs_yolov8']:.2f}x GFLOPs), "
            f"largest {hi['latency_vs_yolov8']:.2f}x ({hi['gflops_vs_yolov8']:.2f}x GFLOPs), "
            f"random {rand[0]:.2f}-{rand[-1]:.2f}x"
        )


def plot(rows, args, path):
    from nas_plugin.files import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(
        len(args.imgsz), len(args.scales), figsize=(5.5 * len(args.scales), 4.2 * len(args.imgsz)), squeeze=False
    )
    colours = {"csp": "tab:blue", "mbconv": "tab:orange"}
    for (i, imgsz), (j, scale) in ((a, b) for a in enumerate(args.imgsz) for b in enumerate(args.scales)):
        ax = axes[i][j]
        here = [r for r in rows if r["scale"] == scale and r["imgsz"] == imgsz]
        for group, colour in colours.items():
            sub = [r for r in here if r["group"] == group]
            ax.scatter(
                [r["gflops"] for r in sub], [r["latency_vs_yolov8"] for r in sub], s=18, color=colour, label=group
            )
            for r in sub:
                if r["model"] in ("min", "max"):
                    ax.scatter(r["gflops"], r["latency_vs_yolov8"], s=60, facecolors="none", edgecolors=colour)
        for r in (r for r in here if r["group"] == "stock"):
            ax.scatter(r["gflops"], r["latency_vs_yolov8"], marker="*", s=120, color="black")
            ax.annotate(r["model"], (r["gflops"], r["latency_vs_yolov8"]), xytext=(4, -10), textcoords="offset points")
        for y in (0.5, 1.0, 1.5):
            ax.axhline(y, color="tab:grey", ls="--", lw=0.7)
        ax.set(
            xscale="log",
            xlabel=f"GFLOPs at {imgsz} px",
            ylabel=f"latency / yolov8{scale}'s",
            title=f"scale {scale}, {imgsz} px (circled: smallest, largest)",
        )
        ax.legend(fontsize=8)
    fig.suptitle("Supernet subnets vs stock YOLO, OpenVINO CPU f32, interleaved rounds", fontsize=10)
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    from nas_plugin.cli import run

    run(main, kept="nothing is kept: the run takes minutes, start it again")
