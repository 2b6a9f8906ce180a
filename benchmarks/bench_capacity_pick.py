#!/usr/bin/env python
"""The subnet with the most weights under a latency budget: a pick that needs no accuracy, to set against the search's.

    python benchmarks/bench_capacity_pick.py --supernet SUPERNET.pt --lut LUT.json --out DIR
        [--share 0.95 | --budget-ms MS] [--population 60] [--generations 60] [--seed 0]

Runs the search's own NSGA-II (`nas_plugin.search.run_search`) with the table's weight counts as the objective and its
prediction as the latency, so it validates nothing and takes minutes. The budget is `--budget-ms` in the table's
units, or `--share` of the predicted latency of the supernet's named arch `yolov8<scale>` (the CSP supernet's stock
model). Writes DIR/arch.json and DIR/capacity.json (the pick's weights and predicted latency, and the named arch's).
Extract the pick with BatchNorm recalibrated as the search writes `best/` (`python tools/extract.py --weights
SUPERNET.pt --arch DIR/arch.json --data DATA.yaml --imgsz IMGSZ --calib-batches 4 --out DIR/inherited`) and fine-tune
`DIR/inherited/model.pt` as bench_vs_yolo fine-tunes (b). Time the pick against YOLOv8n whole before reading its
latency: the table predicts single subnets within about 10 %.
"""

import argparse
from pathlib import Path


def capacity_pick(supernet, lut, budget_ms, out, population=60, generations=60, seed=0):
    """(the front row with the most weights within `budget_ms`, every row evaluated), by NSGA-II on the table alone."""
    from nas_plugin.errors import NASError
    from nas_plugin.lut import predict_us, raw_sums
    from nas_plugin.search import run_search
    from nas_plugin.supernet import space_from_model

    space = space_from_model(supernet)

    def weights(archs):
        counts = [raw_sums(lut, space, a)[1] for a in archs]
        if not all(counts):
            raise NASError("this latency table has no weight counts; rebuild it with tools/build_lut.py.")
        nan = float("nan")
        return [{"map50": nan, "map50_95": nan, "params": int(n), "gflops": nan} for n in counts]

    rows, front = run_search(
        space,
        weights,
        lambda archs: [predict_us(lut, space, a) / 1000 for a in archs],
        out,
        population,
        generations,
        seed,
        objective="params",
        budgets={"latency_ms": budget_ms},
        log=lambda _: None,
    )
    if not front:
        raise NASError(f"no subnet of {len(rows)} evaluated is predicted within {budget_ms:.3f} ms; raise the budget.")
    return max(front, key=lambda r: r["params"]), rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", required=True, help="trained supernet checkpoint (or its YAML)")
    p.add_argument("--lut", required=True, help="its latency table")
    p.add_argument("--out", required=True)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--share", type=float, default=0.95, help="share of the named stock arch's predicted latency")
    budget.add_argument("--budget-ms", type=float, help="latency budget in the table's units")
    p.add_argument("--population", type=int, default=60)
    p.add_argument("--generations", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from nas_plugin.files import write_json
    from nas_plugin.lut import load_lut, predict_us, raw_sums
    from nas_plugin.supernet import fingerprint, load_supernet, named_archs, space_from_model

    supernet = load_supernet(args.supernet)
    space = space_from_model(supernet)
    lut = load_lut(args.lut, fingerprint(supernet))
    out = Path(args.out)
    stock = {}
    if args.budget_ms is None:
        scale = supernet.yaml.get("scale", "")
        name = f"yolov8{scale}"
        arch = named_archs(supernet).get(name)
        if arch is None:
            raise SystemExit(f"--share needs the named arch {name!r} in the supernet's archs:; give --budget-ms.")
        weights = int(raw_sums(lut, space, arch)[1])
        stock = {name: {"latency_ms": predict_us(lut, space, arch) / 1000, "params": weights}}
        args.budget_ms = args.share * stock[name]["latency_ms"]
    best, rows = capacity_pick(supernet, lut, args.budget_ms, out, args.population, args.generations, args.seed)
    write_json(out / "arch.json", best["arch"])
    pick = {"latency_ms": best["latency_ms"], "params": best["params"]}
    write_json(out / "capacity.json", {"budget_ms": args.budget_ms, "evaluated": len(rows), "pick": pick, **stock})
    named = "".join(f"; {k}: {v['params'] / 1e6:.2f} M at {v['latency_ms']:.3f} ms" for k, v in stock.items())
    print(
        f"pick: {best['params'] / 1e6:.2f} M weights at {best['latency_ms']:.3f} ms predicted "
        f"({args.budget_ms:.3f} ms budget{named}): {out / 'arch.json'}"
    )


if __name__ == "__main__":
    main()
