"""Write the built-in synthetic detection dataset and print the path of its data.yaml."""

from __future__ import annotations

import argparse

from nas_plugin.cli import run
from nas_plugin.synthetic_data import PRESETS, SHAPES, make_dataset


def _classes(value: str):
    """Accept a count ("4") or comma-separated shape names ("circle,star")."""
    return int(value) if value.strip().isdigit() else value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="output directory (must be empty or absent unless --exist-ok)")
    p.add_argument("--train", type=int, default=64, help="number of training images (>= 1)")
    p.add_argument("--val", type=int, default=16, help="number of validation images (>= 1)")
    p.add_argument("--test", type=int, default=0, help="number of test images (default 0: no test split)")
    p.add_argument("--imgsz", type=int, default=128, help="image side in pixels (>= 32, multiple of 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (>= 0); same seed gives identical files")
    p.add_argument(
        "--classes",
        type=_classes,
        default=None,
        help=f"a count, or comma-separated names from: {','.join(SHAPES)} (default: all)",
    )
    p.add_argument("--preset", default="standard", help=f"difficulty, one of {', '.join(PRESETS)} (default: standard)")
    p.add_argument("--exist-ok", action="store_true", help="overwrite the dataset in a non-empty --out")
    args = p.parse_args(argv)
    path = make_dataset(
        args.out,
        train=args.train,
        val=args.val,
        imgsz=args.imgsz,
        seed=args.seed,
        classes=args.classes,
        exist_ok=args.exist_ok,
        preset=args.preset,
        test=args.test,
    )
    print(path)


if __name__ == "__main__":
    run(main)
