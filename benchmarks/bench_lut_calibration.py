#!/usr/bin/env python
"""Which calibration subnets make a latency table predict the ends of its range: uniform random vs spread by size.

    python benchmarks/bench_lut_calibration.py --model SUPERNET.yaml|.pt --lut LUT.json [--subnets 20]
        [--held-out 30] [--rounds 15]

The table's entries are kept; only its calibration fit (`measured ~ scale x sum + per_param x weights + offset`)
changes. Two calibration sets, each max, min and --subnets more: uniform random archs (what tables were calibrated
on before) and archs spread evenly by size (`space.sized_arch`, what `build_lut` uses now). They and --held-out
size-spread archs of other seeds (plus the supernet's named archs, e.g. YOLOv8n) are timed whole in one interleaved
run; each fit then predicts the held-out subnets. Prints the error by third of the latency range for both fits;
writes benchmarks/results/lut_calibration.json.
"""

import argparse
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the supernet the table was built for (YAML or checkpoint)")
    p.add_argument("--lut", required=True)
    p.add_argument("--subnets", type=int, default=20, help="calibration subnets besides max and min (default 20)")
    p.add_argument("--held-out", type=int, default=30, help="size-spread subnets to predict (default 30)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    from nas_plugin.files import write_json
    from nas_plugin.lut import calibrated_us, load_lut, raw_sums
    from nas_plugin.lut_build import fit_calibration
    from nas_plugin.lut_report import error_summary
    from nas_plugin.space import arch_key, max_arch, min_arch, random_arch, sized_arch
    from nas_plugin.supernet import fingerprint, load_supernet, named_archs, space_from_model
    from nas_plugin.timing import backend_for, measure_subnets

    supernet = load_supernet(args.model)
    space = space_from_model(supernet)
    lut = load_lut(args.lut, fingerprint(supernet))
    n = args.subnets
    ends = [max_arch(space), min_arch(space)]
    calib = {
        "uniform": ends + [random_arch(space, seed=10_000 + i) for i in range(n)],
        "by size": ends + [sized_arch(space, (i + 0.5) / n, seed=10_000 + i) for i in range(n)],
    }
    held = [
        (f"size {(i + 0.5) / args.held_out:.2f}", sized_arch(space, (i + 0.5) / args.held_out, seed=20_000 + i))
        for i in range(args.held_out)
    ]
    named = {arch_key(a): (name, a) for name, a in named_archs(supernet).items()}  # `yolov8n` over `yolov8`
    held += list(named.values())
    archs = calib["uniform"] + calib["by size"] + [a for _, a in held]
    stats = measure_subnets(supernet, archs, lut, backend_for(lut), rounds=args.rounds, desc="subnets")
    measured = [s["median_us"] for s in stats]
    raw = [raw_sums(lut, space, a) for a in archs]
    k = len(calib["uniform"])
    fits = {  # in the table's own calibration form
        fit: fit_calibration(raw[i : i + k], measured[i : i + k]) for fit, i in (("uniform", 0), ("by size", k))
    }
    rows = [
        {"name": name, "measured_us": m, **{f: calibrated_us(c, sums, params) / m - 1 for f, c in fits.items()}}
        for (name, _), (sums, params), m in zip(held, raw[2 * k :], measured[2 * k :])
    ]

    lo, hi = min(r["measured_us"] for r in rows), max(r["measured_us"] for r in rows)
    thirds = {"fastest third": [], "middle third": [], "slowest third": []}
    for r in rows:
        thirds[list(thirds)[min(2, int(3 * (r["measured_us"] - lo) / (hi - lo + 1e-9)))]].append(r)
    summary = {}
    print(f"{len(rows)} held-out subnets, {lo / 1000:.3f}-{hi / 1000:.3f} ms; error = predicted / measured - 1")
    print(f"{'':>14} {'calibration':>12} {'n':>3} {'mean error':>11} {'MAPE':>7} {'worst':>7} {'within 10%':>11}")
    for part, group in {"all": rows, **thirds}.items():
        for fit in fits:
            errors = [r[fit] for r in group]
            if not errors:
                continue
            s = error_summary(errors)
            summary.setdefault(part, {})[fit] = s
            print(
                f"{part:>14} {fit:>12} {s['n']:>3} {s['mean_error']:>+10.1%} {s['mape']:>7.1%} {s['worst']:>+7.1%} "
                f"{s['within_10pct']:>11.0%}"
            )
    for r in rows[len(rows) - len(named) :]:
        print(f"{r['name']}: uniform {r['uniform']:+.1%}, by size {r['by size']:+.1%}")
    out = Path(args.results) / "lut_calibration.json"
    write_json(
        out,
        {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "lut": args.lut,
            "lut_meta": {k: lut["meta"].get(k) for k in ("backend", "device_name", "precision", "imgsz", "batch")},
            "fits": fits,
            "summary": summary,
            "rows": rows,
        },
    )
    print(f"written {out}")


if __name__ == "__main__":
    from nas_plugin.cli import run

    run(main)
