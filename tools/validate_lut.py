#!/usr/bin/env python
"""Check a latency table against whole subnets measured end to end on the same backend and device.

    python tools/validate_lut.py --lut LUT.json --model SUPERNET --samples N [--seed S] [--rounds 30] [--out DIR]

Measures max, min and N random subnets (exported as Ultralytics exports them, timed in interleaved rounds) and
prints the share of predictions within +-10%, the MAPE, the Spearman rank correlation and the worst cases; with
--out it writes lut_validation.json and lut_validation.png (predicted vs measured with the +-10% band).
"""

import argparse

from nas_plugin.cli import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lut", required=True)
    p.add_argument("--model", required=True, help="the supernet the table was built for (YAML or checkpoint)")
    p.add_argument("--samples", type=int, default=50, help="random subnets besides max and min (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (default 30)")
    p.add_argument("--out", help="directory for lut_validation.json and lut_validation.png")
    args = p.parse_args(argv)

    from nas_plugin.errors import NASError
    from nas_plugin.files import check_writable
    from nas_plugin.lut import load_lut
    from nas_plugin.lut_report import validate_lut
    from nas_plugin.supernet import fingerprint, load_supernet

    if args.samples < 0 or args.rounds < 1:
        raise NASError(f"need --samples >= 0 and --rounds >= 1, got {args.samples} and {args.rounds}.")
    if args.out:
        check_writable(args.out, "--out")
    supernet = load_supernet(args.model)
    lut = load_lut(args.lut, fingerprint(supernet))
    r = validate_lut(supernet, lut, args.samples, args.seed, args.rounds, args.out)
    print(
        f"\n{r['subnets']} subnets on {r['lut']['backend']} {r['lut']['device']} ({r['lut']['device_name']}), "
        f"{r['lut']['precision']}, imgsz {r['lut']['imgsz']}:"
    )
    print(
        f"  within ±10%: {r['within_10pct']:.1%}   MAPE: {r['mape']:.2%}   bias: {r['mean_error']:+.2%}   "
        f"Spearman: {r['spearman']:.4f}"
    )
    print(
        "  worst: "
        + "; ".join(
            f"{w['name']} {w['predicted_us'] / 1000:.2f} vs {w['measured_us'] / 1000:.2f} ms ({w['error']:+.1%})"
            for w in r["worst"]
        )
    )
    if args.out:
        print(f"  written {args.out}/lut_validation.json and lut_validation.png")


if __name__ == "__main__":
    run(main)
