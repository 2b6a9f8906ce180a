#!/usr/bin/env python
"""Build a latency lookup table for a supernet on this machine's device.

    python tools/build_lut.py --model SUPERNET(.yaml|.pt) --imgsz N --backend {openvino,onnxruntime,tensorrt}
        [--device CPU] [--precision f32|f16|bf16] [--threads N] [--batch 1] [--calib-subnets 20] [--rounds 10]
        [--units-of LUT.json] --out LUT.json [--resume]

Measures every distinct block choice x input shape of the supernet at that image size plus its fixed layers, each
exported to ONNX (simplified with onnxslim), then times max, min and --calib-subnets whole subnets spread by size
to fit the correction of per-block sums: call overhead, cross-block fusion, weights a whole model reads afresh where
a block timed alone keeps them in cache, and one scale per feature-map level (P1..P5, head), since how much of its
time alone a block keeps inside a whole model depends on its feature-map size. All timings are relative to a
reference subnet timed in the same rounds, which cancels the drift in machine speed between entries, builds and
validations. The table is saved after every entry; --resume continues an interrupted build, and run on a finished
table refits its calibration from the subnets it timed (tables from before per-level scales gain them). --units-of
times the reference against another table's (of the same supernet, device and backend, e.g. at another --imgsz)
instead of alone, so the two tables' milliseconds are one unit: what `tools/search.py --lut A.json B.json` needs to
compare input sizes.
"""

import argparse

from nas_plugin.cli import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="supernet model YAML or checkpoint")
    p.add_argument("--imgsz", type=int, required=True, help="image size the detector will run at")
    p.add_argument("--backend", required=True, help="openvino, onnxruntime or tensorrt")
    p.add_argument("--device", help="backend device (default: CPU for openvino/onnxruntime, cuda:0 for tensorrt)")
    p.add_argument("--precision", default="f32", help="f32 (default), f16 or bf16, as the backend supports")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's latency default)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument(
        "--calib-subnets",
        type=int,
        default=20,
        help="random whole subnets (besides max and min) timed to calibrate sums (0 = no calibration)",
    )
    p.add_argument(
        "--rounds", type=int, default=10, help="timing rounds per entry (10 calls each, against the reference)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--units-of", help="a table of this supernet and device whose units this one shares (another imgsz)")
    p.add_argument("--out", required=True, help="output LUT JSON")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build of --out")
    args = p.parse_args(argv)

    from nas_plugin.backends import get_backend
    from nas_plugin.errors import NASError
    from nas_plugin.files import check_writable
    from nas_plugin.lut import load_lut
    from nas_plugin.lut_build import build_lut
    from nas_plugin.supernet import fingerprint, load_supernet

    if args.imgsz < 32 or args.batch < 1 or args.calib_subnets < 0 or args.rounds < 1:
        raise NASError(
            "need --imgsz >= 32, --batch >= 1, --calib-subnets >= 0 and --rounds >= 1, "
            f"got {args.imgsz}, {args.batch}, {args.calib_subnets}, {args.rounds}."
        )
    check_writable(args.out, "--out", is_dir=False)
    backend = get_backend(args.backend, args.device, args.precision, args.threads)
    supernet = load_supernet(args.model)
    units_of = load_lut(args.units_of, fingerprint(supernet)) if args.units_of else None
    lut = build_lut(
        supernet,
        args.imgsz,
        backend,
        args.out,
        batch=args.batch,
        resume=args.resume,
        calib_subnets=args.calib_subnets,
        rounds=args.rounds,
        seed=args.seed,
        source=args.model,
        units_of=units_of,
    )
    cal = lut["calibration"]
    line = "no calibration"
    if cal:
        weights = f"{cal['per_param_us'] * 1e6:.0f} us per M weights"
        by_level = cal.get("scale_by_level")
        scaled = (
            "(" + " + ".join(f"{v:.2f} x {g}" for g, v in by_level.items()) + ")"
            if by_level
            else f"{cal['scale']:.3f} x sum"
        )
        line = f"latency = {scaled} + {weights} + {cal['offset_us']:.0f} us"
    print(f"{len(lut['entries'])} entries written to {args.out} ({line})")


if __name__ == "__main__":
    run(main, kept="the table keeps every entry measured so far: run the same command with --resume to continue")
