"""The search as `tools/search.py` runs it: inputs checked before any work, NSGA-II, then the front as YOLO models."""

import json
import shutil
from pathlib import Path

from .errors import NASError
from .evaluation import AccuracyEvaluator
from .extract import write_subnet
from .files import write_json
from .lut import load_lut, predict_us
from .search import History, non_dominated, run_search, write_outputs
from .space import arch_key, max_arch, min_arch
from .supernet import fingerprint, load_supernet, space_from_model


def latency_model(kind, supernet, space, lut):
    """`archs -> [ms]` from the table's prediction, or by timing whole subnets on the table's backend."""
    if kind == "lut":
        return lambda archs: [predict_us(lut, space, a) / 1000 for a in archs]
    from .lut_build import measure_subnets
    from .lut_report import backend_for

    backend = backend_for(lut)
    return lambda archs: [s["median_us"] / 1000 for s in measure_subnets(supernet, archs, lut, backend, desc="generation")]


def _check_device(device):
    """Refuse a CUDA device on a machine without one before any work (Ultralytics would fail at the first subnet)."""
    import torch

    wants_cuda = str(device).lower().startswith("cuda") or str(device).split(",")[0].strip().isdigit()
    if wants_cuda and not torch.cuda.is_available():
        raise NASError(f"--device {device} asks for CUDA, but torch sees no CUDA device here; use --device cpu.")


RESUME_FIXED = ("weights", "data", "lut", "latency_budget", "params_budget", "gflops_budget", "population", "seed", "objective",
                "calib_batches", "val_images", "latency", "device")  # fmt: skip  # change what a resumed search's rows mean


def _check_same_settings(old, new, out):
    """A resumed search reuses its evaluated rows: refuse a setting that would change them (only --generations may)."""
    for key in RESUME_FIXED:
        if old.get(key) != new.get(key):
            raise NASError(
                f"cannot resume the search in {out} with --{key.replace('_', '-')} {new.get(key)!r}: it ran with {old.get(key)!r}, "
                f"which its evaluated subnets depend on; resume with the same value, or start a new search with another --out."
            )


def run_job(args, out):
    from ultralytics.utils import LOGGER, TQDM

    supernet = load_supernet(args.weights)
    space = space_from_model(supernet)
    lut = load_lut(args.lut, fingerprint(supernet))
    imgsz = lut["meta"]["imgsz"]
    _check_device(args.device)
    smallest = predict_us(lut, space, min_arch(space)) / 1000
    if args.latency_budget is not None and args.latency_budget < smallest:
        raise NASError(f"--latency-budget {args.latency_budget} ms is below the smallest subnet's predicted latency {smallest:.3f} ms; no subnet of this supernet can meet it.")
    evaluator = AccuracyEvaluator(supernet, args.data, imgsz, out, args.calib_batches, args.val_images, args.seed, args.device)
    budgets = {"latency_ms": args.latency_budget, "params": args.params_budget and args.params_budget * 1e6, "gflops": args.gflops_budget}
    budgets = {k: v for k, v in budgets.items() if v is not None}
    paths = {k: str(Path(getattr(args, k)).resolve()) for k in ("weights", "data", "lut")}  # the same files from any cwd
    settings = json.loads(json.dumps({**vars(args), **paths, "imgsz": imgsz, "lut_meta": lut["meta"]}, default=str))
    if args.resume and (out / "search_args.json").exists():
        _check_same_settings(json.loads((out / "search_args.json").read_text()), settings, out)
    else:
        write_json(out / "search_args.json", settings)
    LOGGER.info(f"search: NSGA-II, population {args.population}, {args.generations} generations, imgsz {imgsz}, budgets {budgets or 'none'}")
    with TQDM(total=args.generations, desc="generations") as bar:
        rows, front = run_search(
            space, evaluator, latency_model(args.latency, supernet, space, lut), out, args.population, args.generations,
            args.seed, args.objective, budgets, args.resume, log=LOGGER.info, progress=bar,
        )  # fmt: skip
    if not front:
        fastest = min(rows, key=lambda r: r["latency_ms"])
        raise NASError(
            f"no evaluated subnet meets the budgets {budgets}: the fastest of {len(rows)} has latency "
            f"{fastest['latency_ms']:.2f} ms, {fastest['params'] / 1e6:.2f} M params, {fastest['gflops']:.2f} GFLOPs; "
            f"raise the budget (history in {out / 'history.csv'})."
        )
    models = {}  # each front member is extracted and recalibrated once, to re-score it and to write it
    for r in TQDM(front, desc="preparing the front"):
        models[arch_key(r["arch"])] = model = evaluator.static(r["arch"])
        if evaluator.on_subset:  # ranked on a subset: the front's reported accuracy is on the whole val split
            r["map50"], r["map50_95"] = evaluator.validate(model, args.data)
    if evaluator.on_subset:
        front = non_dominated(front, args.objective)
        history = History(out / "history.csv").load()
        write_outputs(out, history, front, args.objective, budgets, {"max": max_arch(space), "min": min_arch(space)})
    shutil.rmtree(out / "front", ignore_errors=True)
    shutil.rmtree(out / "best", ignore_errors=True)
    train_args = {"imgsz": imgsz, "data": str(args.data)}
    for i, r in enumerate(front):
        write_subnet(models[arch_key(r["arch"])], r["arch"], space, out / "front" / str(i), args.weights, evaluator.calib_images, train_args, exist_ok=True)
    best = max(front, key=lambda r: r[args.objective])
    i_best = front.index(best)
    shutil.copytree(out / "front" / str(i_best), out / "best")
    LOGGER.info(
        f"search done: {len(rows)} subnets evaluated, front of {len(front)} in {out / 'front'}; best within budgets: "
        f"front/{i_best} ({args.objective} {best[args.objective]:.4f}, {best['latency_ms']:.2f} ms) copied to {out / 'best'}"
    )
    return front, best
