#!/usr/bin/env python
"""What a smaller `reg_max` (a stock model YAML key) saves in a YOLOv8/YOLO11 head's latency, at each image size.

    python benchmarks/bench_reg_max.py [--models yolov8n yolo11n] [--reg-max 16 8 4] [--imgsz 160 640] [--nc 6]

The box branch of a Detect head predicts `4 * reg_max` distribution bins per anchor (16 bins: 64 channels), and its
hidden width is `max(16, P3 width // 4, 4 * reg_max)`: at scale n both follow `reg_max`. Each model at each
`reg_max` is exported as deployed (fused, ONNX) and timed on OpenVINO CPU f32 in interleaved rounds in one run,
relative to the same model at the first `--reg-max` timed in the same rounds (each model's median over the rounds,
over the first's). Prints latency, parameters and GFLOPs relative to that; writes benchmarks/results/reg_max.json.
Accuracy at each `reg_max` is a training question: see RESULTS.md, "reg_max 8".
"""

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["yolov8n", "yolo11n"], help="stock model YAML stems")
    p.add_argument("--reg-max", type=int, nargs="+", default=[16, 8, 4], help="the first is the yardstick")
    p.add_argument("--imgsz", type=int, nargs="+", default=[160, 640])
    p.add_argument("--nc", type=int, default=6, help="class count of every model (the benchmark preset's)")
    p.add_argument("--rounds", type=int, default=30, help="interleaved latency rounds")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)

    from nas_plugin.backends import get_backend
    from nas_plugin.files import write_json
    from nas_plugin.integration import detection_model, gflops, read_model_yaml
    from nas_plugin.timing import measure_against_first, run_record

    backend = get_backend("openvino")
    rows = []
    for name in args.models:
        cfg = {**read_model_yaml(f"{name}.yaml"), "nc": args.nc}
        models = [detection_model({**cfg, "reg_max": r}) for r in args.reg_max]
        params = [sum(q.numel() for q in m.parameters()) for m in models]
        for imgsz in args.imgsz:
            flops = [gflops(m, imgsz) for m in models]
            stats = measure_against_first(backend, models, imgsz, args.rounds)
            print(f"\n{name}, imgsz {imgsz}: relative to reg_max {args.reg_max[0]}")
            for r, s, n, g in zip(args.reg_max, stats, params, flops):
                row = {
                    "model": name,
                    "imgsz": imgsz,
                    "reg_max": r,
                    "latency": round(s["median_us"] / stats[0]["median_us"], 3),
                    "latency_iqr": round(s["iqr_us"] / stats[0]["median_us"], 3),
                    "params": n,
                    "params_ratio": round(n / params[0], 3),
                    "gflops": round(g, 3),
                    "gflops_ratio": round(g / flops[0], 3),
                }
                rows.append(row)
                print(
                    f"  reg_max {r:>2}: latency {row['latency']:.3f}x, parameters {n:,} ({row['params_ratio']:.3f}x), "
                    f"GFLOPs {g:.2f} ({row['gflops_ratio']:.3f}x)"
                )
    result = {
        **run_record("benchmarks/bench_reg_max.py", argv, backend),
        "backend": f"OpenVINO {backend.info['version']} CPU f32, batch 1",
        "settings": vars(args),
        "rows": rows,
    }
    out = Path(args.results) / "reg_max.json"
    write_json(out, result)
    print(f"written {out}")


if __name__ == "__main__":
    main()
