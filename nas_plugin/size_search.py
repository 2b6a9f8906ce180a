"""The search over input sizes (`tools/search.py --lut A.json B.json`): one search per latency table, at that
table's imgsz, in `out/imgsz<N>/`; then the most accurate subnet within the budgets over every size in `out/best/`.

Input size moves latency and accuracy together as much as the architecture does: on the benchmark data the best
subnet searched at 192 px matched YOLOv8n's own arch at 160 px at 0.84-0.93x its latency (three supernet seeds),
where the picks at 160 px trailed it by 0.03 (README, Benchmarks). Accuracy at each size is what `yolo val` gives
there (the subnets are validated at their table's imgsz), and the written `model.pt` keeps its imgsz as the default
of `yolo val/predict/export`. The tables must share one unit (`tools/build_lut.py --units-of`): each alone carries
the drift of the minute its reference was timed, which would tilt the comparison between sizes by as much.
"""

from pathlib import Path

from .errors import NASError
from .files import copy_dir, pyplot, save_figure, write_json, write_text
from .lut import load_lut, measured_apart, units_id
from .search import csv_text, non_dominated, pick_best
from .search_job import BudgetBelowSmallest, run_search_job
from .supernet import load_supernet


def check_tables(paths):
    """The tables, loaded, if they can be compared: one supernet and device, one table per imgsz, one unit."""
    tables = [load_lut(p) for p in paths]
    first, sizes = tables[0], [t["meta"]["imgsz"] for t in tables]
    for path, table in zip(paths[1:], tables[1:]):
        diff = measured_apart(table["meta"], first["meta"])
        if diff:
            raise NASError(
                f"--lut {path} was measured with other {diff} than {paths[0]} "
                f"({[table['meta'].get(k) for k in diff]} vs {[first['meta'].get(k) for k in diff]}); "
                "a search over input sizes needs tables of one supernet on one device and backend."
            )
        if units_id(table) != units_id(first):
            raise NASError(
                f"--lut {path} and {paths[0]} are not in one unit (each reference was timed alone): build one of them "
                f"with `tools/build_lut.py --units-of` the other."
            )
    repeated = sorted({s for s in sizes if sizes.count(s) > 1})
    if repeated:
        raise NASError(f"--lut gives more than one table at imgsz {repeated}; give one table per input size.")
    return tables


def trained_sizes(supernet):
    """The input sizes a supernet checkpoint was trained at: its `imgsz`, and with stock `multi_scale` every stride
    multiple Ultralytics' multi-scale batches draw."""
    args = supernet.args
    stride, imgsz, ms = int(supernet.stride.max()), int(args["imgsz"]), float(args.get("multi_scale") or 0.0)
    lo, hi = max(stride, int(imgsz * (1 - ms))), int(imgsz * (1 + ms) + stride)  # as detect/train.py draws them
    return list(range(lo // stride * stride, (hi - 1) // stride * stride + 1, stride))


def warn_untrained_sizes(supernet, sizes, logger):
    """Say so when a searched size is one the supernet never trained at: inherited accuracy does not rank subnets
    across sizes as fine-tuning does (benchmarks/RESULTS.md), and there its weights never saw the size at all."""
    trained = trained_sizes(supernet)
    untrained = [s for s in sizes if s not in trained]
    if untrained:
        logger.warning(
            f"search: the supernet was trained at imgsz {trained} only, so subnets at {untrained} are scored with "
            "weights that never saw that size, and inherited accuracy does not rank sizes as fine-tuning does: "
            "fine-tune each size's best (imgsz<N>/best/) and keep the better on val (--select-epochs does it)."
        )


def run_size_search(weights, data, luts, out, **options):
    """`run_search_job` once per table in `luts` (into `out/imgsz<N>`), then `out/best/` is the most accurate front
    subnet within the budgets over all sizes (by latency timed whole, as each search picks its own), and
    `out/pareto.csv|json|png` the front over sizes. A size whose smallest subnet exceeds the latency budget is left
    out with a warning. `options` are `run_search_job`'s. Returns (front over sizes, best row); rows have `imgsz`."""
    from ultralytics.utils import LOGGER

    out = Path(out)
    tables = check_tables(luts)
    if Path(weights).suffix == ".pt":  # a YAML's subnets are untrained at every size
        warn_untrained_sizes(load_supernet(weights), [t["meta"]["imgsz"] for t in tables], LOGGER)
    fronts = {}
    for path, table in sorted(zip(luts, tables), key=lambda pt: pt[1]["meta"]["imgsz"]):
        imgsz = table["meta"]["imgsz"]
        try:
            front, _ = run_search_job(weights, data, path, out / f"imgsz{imgsz}", **options)
        except BudgetBelowSmallest as e:
            LOGGER.warning(f"search: imgsz {imgsz} left out: {e}")
            continue
        fronts[imgsz] = [{**r, "imgsz": imgsz, "front_index": i} for i, r in enumerate(front)]
    if not fronts:
        raise NASError(f"no input size of {sorted(t['meta']['imgsz'] for t in tables)} has a subnet within the budget.")
    rows = [r for front in fronts.values() for r in front]
    objective, budget = options.get("objective", "map50_95"), options.get("latency_budget")
    best, _ = pick_best(rows, objective, budget)
    key = "measured_ms" if "measured_ms" in rows[0] else "latency_ms"  # timed whole, unless --no-measure-front
    joint = non_dominated(rows, objective, key)
    copy_dir(out / f"imgsz{best['imgsz']}" / "front" / str(best["front_index"]), out / "best")
    write_text(out / "pareto.csv", csv_text(joint))
    write_json(out / "pareto.json", {"objective": objective, "budgets": {"latency_ms": budget}, "front": joint})
    plot_sizes(fronts, joint, objective, budget, key, out / "pareto.png")
    LOGGER.info(
        f"search over sizes {sorted(fronts)} done: best imgsz {best['imgsz']} (imgsz{best['imgsz']}/front/"
        f"{best['front_index']}, {objective} {best[objective]:.4f}, {best[key]:.2f} ms) copied to {out / 'best'}"
    )
    return joint, best


def plot_sizes(fronts, joint, objective, budget, key, path):
    """Each size's front in its own colour, the front over sizes, and the latency budget, on latency `key`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for imgsz, front in sorted(fronts.items()):
        front = sorted(front, key=lambda r: r[key])  # each size's front was found by predicted latency
        ax.plot([r[key] for r in front], [r[objective] for r in front], "o-", ms=3, lw=1, label=f"front at {imgsz} px")
    ax.plot(
        [r[key] for r in joint],
        [r[objective] for r in joint],
        "-",
        color="k",
        lw=2,
        alpha=0.3,
        label="front over sizes",
    )
    if budget:
        ax.axvline(budget, color="tab:blue", ls="--", lw=1, label=f"budget {budget:g} ms")
    timed = ", timed whole" if key == "measured_ms" else ", predicted"
    ax.set(xlabel=f"latency (ms{timed})", ylabel={"map50_95": "mAP50-95", "map50": "mAP50"}.get(objective, objective))
    ax.legend(fontsize=8)
    save_figure(fig, path)
