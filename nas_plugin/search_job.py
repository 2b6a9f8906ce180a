"""The search as `tools/search.py` runs it: inputs checked before any work, NSGA-II, then the front as YOLO models."""

import contextlib
import copy
import json
import shutil
from pathlib import Path

from .errors import NASError
from .evaluation import AccuracyEvaluator, cores
from .extract import write_subnet
from .files import check_writable, copy_dir, write_json
from .lut import load_lut, predict_us
from .parallel import WorkerPool
from .ray_pool import RayPool, check_ray
from .search import (
    CALIB_BATCHES,
    GENERATIONS,
    LATENCY_MODES,
    OBJECTIVES,
    POPULATION,
    VAL_IMAGES,
    History,
    budget_left_unused,
    meets_budgets,
    near_budget,
    non_dominated,
    pick_best,
    run_search,
    write_outputs,
)
from .space import arch_key, max_arch, min_arch
from .supernet import fingerprint, load_supernet, named_archs, space_from_model

NEAR_BUDGET = "near_budget"  # named/<this>/: the subnet of `search.near_budget`, written beside the named archs


class BudgetBelowSmallest(NASError):
    """The latency budget is below the smallest subnet's predicted latency: no subnet can meet it."""


def latency_model(kind, supernet, space, lut):
    """`archs -> [ms]` from the table's prediction, or by timing whole subnets on the table's backend."""
    if kind == "lut":
        return lambda archs: [predict_us(lut, space, a) / 1000 for a in archs]
    from .timing import backend_for, measure_subnets

    backend = backend_for(lut)
    return lambda archs: [
        s["median_us"] / 1000 for s in measure_subnets(supernet, archs, lut, backend, desc="generation")
    ]


MAX_DEFAULT_WORKERS = 8  # each worker holds the supernet and the calibration images: a big machine gets 8 unless asked


def _wants_cuda(device):
    return str(device).lower().startswith("cuda") or str(device).split(",")[0].strip().isdigit()


def default_workers(device):
    """Worker processes for the search: one per core on the CPU (each validates on one), one on a GPU."""
    return 1 if _wants_cuda(device) else min(cores(), MAX_DEFAULT_WORKERS)


def _check_device(device):
    """Refuse a CUDA device on a machine without one before any work (Ultralytics would fail at the first subnet)."""
    import torch

    if _wants_cuda(device) and not torch.cuda.is_available():
        raise NASError(f"--device {device} asks for CUDA, but torch sees no CUDA device here; use --device cpu.")


RESUME_FIXED = (
    "weights",
    "data",
    "lut",
    "latency_budget",
    "params_budget",
    "gflops_budget",
    "population",
    "seed",
    "objective",
    "calib_batches",
    "val_images",
    "latency",
    "device",
)  # change what a resumed search's rows mean


def _check_same_settings(old, new, out):
    """A resumed search reuses its evaluated rows: refuse a setting that would change them (only --generations may)."""
    for key in RESUME_FIXED:
        if old.get(key) != new.get(key):
            raise NASError(
                f"cannot resume the search in {out} with --{key.replace('_', '-')} {new.get(key)!r}: "
                f"it ran with {old.get(key)!r}, "
                "which its evaluated subnets depend on; "
                "resume with the same value, or start a new search with another --out."
            )


def check_settings(s):
    """Refuse a bad setting before any work, naming the option, the value and what is allowed."""
    checks = [
        (
            s["latency_budget"] is None or s["latency_budget"] > 0,
            f"--latency-budget must be > 0 ms, got {s['latency_budget']}.",
        ),
        (
            s["params_budget"] is None or s["params_budget"] > 0,
            f"--params-budget must be > 0 (millions), got {s['params_budget']}.",
        ),
        (
            s["gflops_budget"] is None or s["gflops_budget"] > 0,
            f"--gflops-budget must be > 0, got {s['gflops_budget']}.",
        ),
        (s["population"] >= 4, f"--population must be >= 4, got {s['population']}."),
        (s["generations"] >= 1, f"--generations must be >= 1, got {s['generations']}."),
        (
            s["objective"] in OBJECTIVES,
            f"--objective {s['objective']!r} is not allowed; choose from {list(OBJECTIVES)}.",
        ),
        (
            s["latency"] in LATENCY_MODES,
            f"--latency {s['latency']!r} is not allowed; choose from {list(LATENCY_MODES)}.",
        ),
        (s["calib_batches"] >= 1, f"--calib-batches must be >= 1, got {s['calib_batches']}."),
        (s["val_images"] is None or s["val_images"] >= 1, f"--val-images must be >= 1, got {s['val_images']}."),
        (s["workers"] is None or s["workers"] >= 1, f"--workers must be >= 1, got {s['workers']}."),
        (
            s["ray_cpus_per_worker"] >= 1,
            f"--ray-cpus-per-worker must be >= 1, got {s['ray_cpus_per_worker']}.",
        ),
        (
            s["ray_gpus_per_worker"] >= 0,
            f"--ray-gpus-per-worker must be >= 0, got {s['ray_gpus_per_worker']}.",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise NASError(message)
    if s["ray"]:
        check_ray(s["ray"])
    out = Path(s["out"])
    check_writable(out, "--out")
    if (out / "history.csv").exists() and not s["resume"]:
        raise NASError(
            f"{out} already holds a search (history.csv); pass --resume to continue it, or choose another --out."
        )
    _check_device(s["device"])


def run_search_job(
    weights,
    data,
    lut,
    out,
    *,
    latency_budget=None,
    params_budget=None,
    gflops_budget=None,
    population=POPULATION,
    generations=GENERATIONS,
    seed=0,
    objective="map50_95",
    calib_batches=CALIB_BATCHES,
    val_images=VAL_IMAGES,
    latency="lut",
    measure_front=True,
    device="cpu",
    workers=None,
    ray=None,
    ray_cpus_per_worker=1,
    ray_gpus_per_worker=0,
    resume=False,
):
    """Search supernet `weights` (a checkpoint, or a YAML untrained) on `data` with latency table `lut`; writes `out`.

    Budgets: `latency_budget` in ms (in the table's units), `params_budget` in millions, `gflops_budget`. Accuracy is
    `objective` after BN recalibration on `calib_batches` x 16 train images, ranked on `val_images` seeded val images
    (None: all) and the front re-scored on all; latency is the table's prediction (`latency="lut"`) or whole subnets
    timed (`"measure"`). With the table, `measure_front` times the front's subnets whole on its backend (its units,
    interleaved with its reference) and `best/` is the most accurate whose measured latency meets the budget: the
    table's error on single subnets reached 13 % in the demo. `workers` processes evaluate each generation (None:
    `default_workers(device)`); the results do not depend on it. `ray` ('auto' or HOST:PORT) evaluates on the actors
    of a running Ray cluster instead, one per `ray_gpus_per_worker` GPUs (when > 0) or `ray_cpus_per_worker` CPUs, at
    most `workers` when given.
    `resume` continues a search in `out` with the same settings (any `workers`). The supernet YAML's named archs
    (`archs:`, e.g. stock YOLOv8n) that meet the budgets are written to `named/<name>/` beside `best/`, judged by
    their latency timed whole with the front where it is timed, else by the table.
    Returns (front rows, best row).
    """
    settings = dict(locals())  # every argument: checked, and kept in search_args.json for --resume
    from ultralytics.utils import LOGGER, TQDM

    check_settings(settings)
    out = Path(out)
    supernet = load_supernet(weights)
    space = space_from_model(supernet)
    _check_named_free(supernet)
    table = load_lut(lut, fingerprint(supernet))
    imgsz = table["meta"]["imgsz"]
    smallest = predict_us(table, space, min_arch(space)) / 1000
    if latency_budget is not None and latency_budget < smallest:
        raise BudgetBelowSmallest(
            f"--latency-budget {latency_budget} ms is below the smallest subnet's predicted latency {smallest:.3f} ms; "
            "no subnet of this supernet can meet it."
        )
    _warn_outside_band(supernet, table, latency_budget, LOGGER)
    evaluator_args = dict(
        data=data,
        imgsz=imgsz,
        work_dir=out,
        calib_batches=calib_batches,
        val_images=val_images,
        seed=seed,
        device=device,
    )
    evaluator = AccuracyEvaluator(supernet, **evaluator_args)  # the front's models, and the serial search's scores
    budgets = {"latency_ms": latency_budget, "params": params_budget and params_budget * 1e6, "gflops": gflops_budget}
    budgets = {k: v for k, v in budgets.items() if v is not None}
    paths = {k: str(Path(settings[k]).resolve()) for k in ("weights", "data", "lut")}  # the same files from any cwd
    settings = json.loads(json.dumps({**settings, **paths, "imgsz": imgsz, "lut_meta": table["meta"]}, default=str))
    if resume and (out / "search_args.json").exists():
        _check_same_settings(json.loads((out / "search_args.json").read_text()), settings, out)
    else:
        write_json(out / "search_args.json", settings)
    if ray:
        pool = RayPool(supernet, ray, ray_cpus_per_worker, ray_gpus_per_worker, workers, **evaluator_args)
        where = f"{pool.workers} Ray worker{'s' * (pool.workers > 1)} at {ray}"
    else:
        workers = workers or default_workers(device)
        pool = WorkerPool(supernet, workers, **evaluator_args) if workers > 1 else contextlib.nullcontext(evaluator)
        where = f"{workers} worker{'s' * (workers > 1)}"
    LOGGER.info(
        f"search: NSGA-II, population {population}, {generations} generations, "
        f"imgsz {imgsz}, budgets {budgets or 'none'}, {where}"
    )
    with pool as evaluate, TQDM(total=generations, desc="generations") as bar:
        rows, front = run_search(
            space,
            evaluate,
            latency_model(latency, supernet, space, table),
            out,
            population,
            generations,
            seed,
            objective,
            budgets,
            resume,
            log=LOGGER.info,
            progress=bar,
        )
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
            r["map50"], r["map50_95"] = evaluator.validate(model, data)

    def rewrite_outputs(front):  # pareto.* once the front's rows change after the search
        marks = {"max": max_arch(space), "min": min_arch(space)}
        write_outputs(out, History(out / "history.csv").load(), front, objective, budgets, marks)

    if evaluator.on_subset:
        front = non_dominated(front, objective)
        rewrite_outputs(front)
    shutil.rmtree(out / "front", ignore_errors=True)
    shutil.rmtree(out / "best", ignore_errors=True)
    train_args = {"imgsz": imgsz, "data": str(data)}
    for i, r in enumerate(front):
        write_subnet(
            models[arch_key(r["arch"])],
            r["arch"],
            space,
            out / "front" / str(i),
            weights,
            evaluator.calib_images,
            train_args,
            exist_ok=True,
        )
    named = scored_named(supernet, space, table, evaluator)  # the stock arch, timed with the front where it is
    near = near_budget(rows, front, budgets, objective)
    if near:  # handed over as named/near_budget/: a finalist the inherited score cannot rank against best/
        model = evaluator.static(near["arch"])
        named.append({**near, **evaluator.score(model, evaluator.data_yaml), "name": NEAR_BUDGET, "model": model})
    if measure_front and latency == "lut":
        named_models = {arch_key(r["arch"]): r["model"] for r in named}
        timed = timed_rows(supernet, front + named, {**models, **named_models}, table)
        front, named = timed[: len(front)], timed[len(front) :]
        rewrite_outputs(front)
    best, met = pick_best(front, objective, budgets.get("latency_ms"))
    if not met:
        LOGGER.warning(
            f"search: no front subnet meets --latency-budget {latency_budget} ms when timed whole; best/ is the "
            f"fastest timed, {best['measured_ms']:.3f} ms (predicted {best['latency_ms']:.3f} ms): search under a "
            "lower budget."
        )
    i_best = front.index(best)
    copy_dir(out / "front" / str(i_best), out / "best")
    LOGGER.info(
        f"search done: {len(rows)} subnets evaluated, front of {len(front)} in {out / 'front'}; best within budgets: "
        f"front/{i_best} ({objective} {best[objective]:.4f}, {best.get('measured_ms', best['latency_ms']):.2f} ms) "
        f"copied to {out / 'best'}"
    )
    _warn_budget_left_unused(rows, front, latency_budget, objective, LOGGER)
    write_named(named, space, budgets, out, weights, evaluator.calib_images, train_args, objective, LOGGER)
    return front, best


def _check_named_free(supernet):
    """Refuse a supernet YAML whose `archs:` holds the name of the subnet the search itself writes to `named/`."""
    if NEAR_BUDGET in named_archs(supernet):
        raise NASError(
            f"the supernet YAML's archs: names an arch '{NEAR_BUDGET}', the name the search gives the subnet it "
            f"writes to named/{NEAR_BUDGET}/; rename that arch (any other name is allowed)."
        )


def scored_named(supernet, space, table, evaluator):
    """Rows of the supernet's named archs (`archs:`, e.g. stock YOLOv8n), each extracted, recalibrated and scored on
    all val images as the front is, with the table's latency, its `name` and its `model`."""
    by_arch = {arch_key(arch): (name, arch) for name, arch in named_archs(supernet).items()}  # the scaled alias last
    rows = []
    for name, arch in by_arch.values():
        model = evaluator.static(arch)
        latency_ms = predict_us(table, space, arch) / 1000
        rows.append(
            {
                "name": name,
                "arch": arch,
                **evaluator.score(model, evaluator.data_yaml),
                "latency_ms": latency_ms,
                "model": model,
            }
        )
    return rows


def named_within(rows, budgets):
    """(rows within `budgets`, rows outside): by latency timed whole where the row has it (`measured_ms`), as
    `best/` is picked, else by the table: the stock arch's prediction can miss the stock model's own timed latency
    that a budget is often set to by a few per cent."""
    within, outside = [], []
    for r in rows:
        latency_ms = r.get("measured_ms", r["latency_ms"])
        (within if meets_budgets({**r, "latency_ms": latency_ms}, budgets) else outside).append(r)
    return within, outside


def write_named(rows, space, budgets, out, weights, calib_images, train_args, objective, logger):
    """The named archs of `scored_named` within `budgets` as `out/named/<name>/`, and every one's scores (within the
    budgets or not) in `out/named.json`.

    Inherited accuracy after a short supernet run can rank the stock arch below a smaller subnet that ends lower
    after fine-tuning (Benchmarks), so the stock arch is handed over too, to be fine-tuned beside `best/`.
    """
    shutil.rmtree(out / "named", ignore_errors=True)
    within, outside = named_within(rows, budgets)
    scored = [{k: v for k, v in r.items() if k != "model"} | {"within": any(r is w for w in within)} for r in rows]
    write_json(out / "named.json", {"objective": objective, "budgets": budgets, "named": scored})

    def latency(r):
        timed = f", {r['measured_ms']:.2f} ms timed" if "measured_ms" in r else ""
        return f"{r['latency_ms']:.2f} ms predicted{timed}"

    for r in outside:
        logger.info(f"search: named arch {r['name']} ({latency(r)}) is outside the budgets")
    for r in within:
        write_subnet(r["model"], r["arch"], space, out / "named" / r["name"], weights, calib_images, train_args)
        logger.info(
            f"search: named arch {r['name']} meets the budgets ({latency(r)}, {objective} {r[objective]:.4f} "
            f"inherited), written to {out / 'named' / r['name']}: fine-tune it beside best/ and keep the better on val "
            "(--select-epochs does it)"
        )


def _warn_budget_left_unused(rows, front, latency_budget, objective, logger):
    unused = budget_left_unused(rows, front, latency_budget)
    if unused is None:
        return
    end, between = unused
    where = f"the front ends at {end:.2f} ms predicted, {end / latency_budget:.2f}x the --latency-budget"
    if between:
        logger.warning(
            f"search: {where}: the {between} subnets evaluated between scored no higher {objective} than a faster "
            "one each. After a short supernet run larger subnets often inherit no more (README, Known limits), though "
            "they may fine-tune higher: fine-tune named/ beside best/ (--select-epochs does it), or train the supernet "
            "longer."
        )
    else:
        logger.warning(f"search: {where} and no subnet between was evaluated: search more --generations.")


def _warn_outside_band(supernet, table, latency_budget, logger):
    """Say so when the budget lies outside the latency band the supernet was trained for (its `nas: band`): subnets
    there had less training. Compared only in the band's own units, when its table was measured as this one."""
    nas = supernet.yaml.get("nas") or {}
    band, band_lut = nas.get("band"), nas.get("lut")
    if latency_budget is None or not band or not band_lut or not Path(band_lut).is_file():
        return
    try:
        band_meta = load_lut(band_lut)["meta"]
    except NASError:
        return
    if band_meta == table["meta"] and not band[0] <= latency_budget <= band[1]:
        logger.warning(
            f"search: --latency-budget {latency_budget} ms lies outside the band {band} ms this supernet was trained "
            "for (its nas: band); subnets near the budget trained less: search inside the band, or train the "
            "supernet with a band around this budget."
        )


def timed_rows(supernet, rows, models, table):
    """The rows (the front, and the named archs) with `measured_ms`: each subnet timed whole, as
    `tools/validate_lut.py` times them, in one interleaved run."""
    from ultralytics.utils import LOGGER

    from .timing import backend_for, measure_models

    stats = measure_models(
        supernet,
        (copy.deepcopy(models[arch_key(r["arch"])]) for r in rows),  # timing fuses in place; the written ones stay
        table,
        backend_for(table),
        desc="the front",
        total=len(rows),
    )
    rows = [{**r, "measured_ms": s["median_us"] / 1000} for r, s in zip(rows, stats)]
    errors = [r["latency_ms"] / r["measured_ms"] - 1 for r in rows]
    LOGGER.info(
        f"search: front (and named archs) timed whole on {table['meta']['backend']}: the table's prediction was off by "
        f"{min(errors):+.1%} to {max(errors):+.1%}"
    )
    return rows
