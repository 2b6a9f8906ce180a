#!/usr/bin/env python
"""The searched model vs stock YOLO at YOLOv8n's latency, at equal training, on the benchmark preset.

    python benchmarks/bench_vs_yolo.py [--work runs/bench_fidelity] [--name recipe] [--lut LUT.json]
        [--budgets 1.0,0.5] [--epochs 30] [--seeds 2] [--batch 32] [--population 30] [--generations 10] [--jobs 2]
        [--rounds 20] [--timings 3] [--train-args "optimizer=AdamW lr0=0.002"]
        [--equal-training YOLOv8n,YOLO11n,YOLO26n] [--scratch YOLOv8n,YOLO11n,YOLO26n] [--restart YOLOv8n]
        [--finetune-args "..."]
        [--seeds-for "searched (b)=2,YOLOv8n 90 ep=2"] [--size-luts LUT192.json,...] [--select-epochs E]

Reads what `bench_fidelity.py --name NAME` left in `--work` (the preset dataset, the trained supernet, stock YOLOv8n
trained alone) and:
1. times stock YOLOv8n, YOLO11n and YOLO26n (this dataset's class count) in the latency table's units (relative to
   its reference subnet, interleaved), so shares of YOLOv8n's latency (`--budgets`) are the searches' budgets; once
   per table: kept beside it (`<table>_stock_nc<N>.json`), so re-runs and the benches of other supernets on the same
   table search under the same budget (time the table and this step on an idle machine; delete the file to re-time);
2. runs `tools/search.py` under each budget;
3. trains, once per seed, with the same hyperparameters: YOLOv8n, YOLO11n and YOLO26n (`--scratch`) from scratch for
   `--epochs`;
   each search's best subnet (a) from scratch from its model.yaml for `--epochs` and (b) fine-tuned from its inherited
   weights for `--epochs`; and the stock models named in `--equal-training` again for the supernet's epochs +
   `--epochs`, the total (b) received (equal training); when the supernet's space contains YOLOv8n (the CSP
   supernet's `archs:`), also that subnet fine-tuned like (b), which separates what the supernet's training gives
   from what the search's choice gives; and the stock models named in `--restart` trained in (b)'s two stages
   without the supernet (the supernet's epochs from scratch, then fine-tuned `--epochs` from that run's last.pt),
   which separates what the supernet gives from what a second warm-up and decay give;
4. scores every training's last epoch on val (what the search ranked by) and, where the data has a test split
   (`bench_fidelity.py --test`), on test, which no training, search or checkpoint choice has seen;
5. exports every trained model the same way (fused, ONNX, OpenVINO CPU f32, batch 1) and times it against YOLOv8n
   in interleaved rounds, `--timings` times over (each compiled afresh: idle timings of the same models minutes apart
   differ by up to 0.1x), reports the median and the range, and warns if the stock models' median ratios disagree
   with step 1's (a busy machine: re-run the same command to re-time); stock models `--scratch` leaves out are timed
   untrained for this check (weights do not change latency).
Prints mean mAP50-95 with its seed spread, latency vs YOLOv8n, epochs and CPU minutes per row; writes
benchmarks/results/vs_yolo_<name>.json and .png. Finished trainings and searches are reused (a run directory names
its length where it is not the default 30 epochs). `--train-args` adds stock `yolo train` arguments to every training
here (train the supernet with the same: `bench_fidelity.py --train-args ... --supernet-only`); their run directories
and result files are named after them. `--finetune-args` adds arguments to the fine-tuning rows ((b), YOLOv8n (b)) only:
fine-tuning from trained weights may want other settings than training from scratch (Ultralytics itself starts the
bias warm-up at 0 instead of 0.1 when it picks AdamW), and the stock rows keep the settings that suit them.
`--size-luts` adds tables at other image sizes (built `--units-of` the `--lut`): each search then searches every
size (`tools/search.py --lut ...`), and each size's best gets its (a) and (b) rows (`searched 192px (b)`), trained,
scored and timed at that size, since inherited accuracy does not rank sizes as fine-tuning does, so the search's
own pick over sizes is not the one to trust. `--select-epochs E` lets the search itself choose instead
(`tools/search.py --select-epochs`: each size's best and named archs fine-tuned E epochs with the fine-tuning rows'
settings, the best on val becomes best/), and the searched rows are each search's best/ alone.
`--seeds-for` gives named rows more (or fewer) seeds than `--seeds`: the rows a claim rests on get a second seed
without retraining every row, and `ROW=0` leaves a row out (a second supernet seed may need only (b) and YOLOv8n
trained as long); latency is timed against YOLOv8n trained or, where its row is left out, untrained.
"""

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from nas_plugin.run_files import DEFAULT_EPOCHS
from nas_plugin.run_files import YOLO_CLI as YOLO

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STOCK = {"YOLOv8n": "yolov8n.yaml", "YOLO11n": "yolo11n.yaml", "YOLO26n": "yolo26n.yaml"}
TIMINGS_AGREE = 0.10  # idle runs agree within 9 %; every disturbed final timing seen moved a stock ratio by 11-23 %


def stock_model(cfg, nc):
    from nas_plugin.integration import detection_model, read_model_yaml

    return detection_model({**read_model_yaml(cfg), "nc": nc})


def stock_latency(supernet, lut, lut_path, nc, backend, timings=3):
    """{stock model: latency in `lut`'s units}, the median of `timings` timings against the table's reference on first
    use, kept beside the table, so every bench on one table searches under one budget (a budget timed on a busy machine
    moves; on one idle AMD host a single timing read YOLOv8n 10 % above the median of six)."""
    from nas_plugin.files import write_json
    from nas_plugin.timing import measure_models

    cache = lut_path.with_name(f"{lut_path.stem}_stock_nc{nc}.json")
    key = {"lut_date": lut["meta"]["date"], "fingerprint": lut["meta"]["fingerprint"]}
    found = json.loads(cache.read_text()) if cache.is_file() else {}
    if {k: found.get(k) for k in key} == key:
        print(f"stock models' latency as first timed for this table: {cache}", flush=True)
        return found["stock_ms"]
    models = [stock_model(c, nc) for c in STOCK.values()]
    runs = [
        [s["median_us"] / 1000 for s in measure_models(supernet, models, lut, backend, desc="stock models")]
        for _ in range(timings)
    ]
    per_model = dict(zip(STOCK, map(list, zip(*runs))))
    stock_ms = {name: statistics.median(ms) for name, ms in per_model.items()}
    write_json(cache, {**key, "stock_ms": stock_ms, "timings_ms": per_model})
    return stock_ms


def two_stages(first, run_dir, cfg, data, first_epochs, common, fit, seed):
    """The chain of `yolo train` commands that trains stock `cfg` as (b) is trained, without the supernet:
    `first_epochs` from scratch in `first` (with `common`), then fine-tuned with `fit` from its last.pt in `run_dir`."""
    from nas_plugin.run_files import train_command

    return (
        train_command(YOLO, first, cfg, data, **{**common, "epochs": first_epochs}, seed=seed),
        train_command(YOLO, run_dir, Path(first) / "weights" / "last.pt", data, **fit, seed=seed),
    )


def training_commands(rows, seeds, restart_rows, work, data, train_args, common, first_epochs):
    """({"ROW seed N": command or chain for `run_trainings`}, {(row, seed): run dir}, {(row, seed): the first stage's
    run dir of a `restart_rows` row}). A first stage that is also another row's run (`--scratch` for as many epochs
    as the supernet) is trained once, by the chain, which the second stage has to wait for anyway."""
    from nas_plugin.run_files import run_name, train_command

    runs, dirs, first_dirs = {}, {}, {}
    for name, (_, _, folder, stem, model, epochs, own) in rows.items():
        for seed in range(seeds[name]):
            d = dirs[name, seed] = work / folder / run_name(stem, epochs, {**train_args, **own}, seed)
            fit = {**common, **own, "epochs": epochs}
            if name not in restart_rows:
                runs[f"{name} seed {seed}"] = train_command(YOLO, d, model, data, **fit, seed=seed)
                continue
            first = first_dirs[name, seed] = work / folder / run_name(Path(model).stem, first_epochs, train_args, seed)
            runs[f"{name} seed {seed}"] = two_stages(first, d, model, data, first_epochs, common, fit, seed)
    for (name, seed), d in dirs.items():
        if d in first_dirs.values():
            runs[f"{name} seed {seed}"] = None
    return runs, dirs, first_dirs


def selected_row(search):
    """The searched row of a search run with `--select-epochs`: its `best/` as the selection left it, at the size of
    the finalist it copied, with a note saying how it was chosen."""
    kept = json.loads((Path(search) / "finalists.json").read_text())
    chosen = next(r for r in kept["finalists"] if r["selected"])
    note = f"{kept['epochs']}-epoch fine-tunes of {len(kept['finalists'])} finalists chose {chosen['label']}"
    return {**chosen, "dir": str(Path(search) / "best"), "search_best": True, "note": note}


def row_seeds(spec, rows, default):
    """{row: seed count}: `default`, or N from `--seeds-for` "ROW=N,..." (0 leaves a row out); one row must stay."""
    counts = dict.fromkeys(rows, default)
    for item in filter(None, (v.strip() for v in spec.split(","))):
        name, _, count = item.rpartition("=")
        if name not in rows or not count.isdigit():
            raise SystemExit(
                f"--seeds-for takes ROW=N with N >= 0 (0: left out) and ROW one of {', '.join(rows)}; got {item!r}."
            )
        counts[name] = int(count)
    if not any(counts.values()):
        raise SystemExit(f"--seeds {default} with --seeds-for {spec!r} leaves every row out; give one row a seed.")
    return counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/bench_fidelity", help="the --work of bench_fidelity.py")
    p.add_argument("--name", default="recipe", help="the supernet run of bench_fidelity.py (its --name)")
    p.add_argument("--lut", default=None, help="latency table of the supernet (default: WORK/lut_<imgsz>.json)")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument(
        "--size-luts",
        default="",
        help="more tables of the supernet, one per imgsz, built --units-of --lut (comma-separated): the searches "
        "choose the input size too, and their rows train, score and time at the size chosen",
    )
    p.add_argument(
        "--select-epochs",
        type=int,
        default=0,
        help="the searches pick best/ by fine-tuning their finalists this many epochs (tools/search.py "
        "--select-epochs, with the fine-tuning rows' settings); the searched rows are then each search's best/ alone",
    )
    p.add_argument("--budgets", default="1.0", help="latency budgets as shares of YOLOv8n's, comma-separated")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seeds-for", default="", help='seeds of named rows, overriding --seeds: "ROW=N,..."')
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--population", type=int, default=30)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20, help="interleaved latency rounds")
    p.add_argument("--timings", type=int, default=3, help="final timings of every model, each --rounds long")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--train-args", default="", help='yolo train arguments for every training: "key=value ..."')
    p.add_argument("--finetune-args", default="", help="yolo train arguments added for the fine-tuning rows only")
    p.add_argument(
        "--equal-training",
        default=",".join(STOCK),
        help="stock models also trained as long as (b) in all (the costly rows)",
    )
    p.add_argument(
        "--restart",
        default="",
        help="stock models trained the supernet's epochs, then fine-tuned --epochs from that as (b) is (no supernet)",
    )
    p.add_argument(
        "--scratch",
        default=",".join(STOCK),
        help="stock models trained from scratch for --epochs (YOLOv8n left out is timed untrained as the reference)",
    )
    args = p.parse_args(argv)
    if args.timings < 1:
        raise SystemExit(f"--timings takes a count >= 1, got {args.timings}.")

    import numpy as np
    import yaml
    from ultralytics import YOLO as Model

    from nas_plugin.calibration import calibration_batches, check_dataset
    from nas_plugin.extract import save_subnet
    from nas_plugin.files import write_json
    from nas_plugin.lut import load_lut
    from nas_plugin.run_files import (
        final_metrics,
        parse_train_args,
        pending,
        run_trainings,
        split_metrics,
        stack_versions,
        train_args_tag,
        train_seconds,
    )
    from nas_plugin.search import CALIB_BATCHES
    from nas_plugin.supernet import fingerprint, load_supernet, named_archs
    from nas_plugin.timing import backend_for, measure_interleaved, model_onnx, run_record

    train_args, finetune_args = (
        parse_train_args(args.train_args),
        parse_train_args(args.finetune_args, "--finetune-args"),
    )
    args_tag, args_note = train_args_tag(train_args), f", {args.train_args}" if train_args else ""
    finetune_note = f", fine-tuned with {args.finetune_args}" if finetune_args else ""
    long_stock, short_stock, restart_stock = (
        [v for v in names.split(",") if v] for names in (args.equal_training, args.scratch, args.restart)
    )
    for flag, names, given in (
        ("--equal-training", long_stock, args.equal_training),
        ("--scratch", short_stock, args.scratch),
        ("--restart", restart_stock, args.restart),
    ):
        if any(v not in STOCK for v in names):
            raise SystemExit(f"{flag} takes stock models from {', '.join(STOCK)}, got {given!r}.")
    work = Path(args.work).resolve()
    data = work / "data" / "data.yaml"
    supernet_dir = work / args.name / "supernet"
    weights = supernet_dir / "weights" / "last.pt"
    with open(supernet_dir / "results.csv") as f:
        supernet_epochs = len(list(csv.DictReader(f)))
    data_cfg = yaml.safe_load(data.read_text())
    nc, has_test = int(data_cfg["nc"]), bool(data_cfg.get("test"))
    supernet = load_supernet(weights)
    lut_path = Path(args.lut) if args.lut else work / f"lut_{args.imgsz}.json"
    lut = load_lut(lut_path, fingerprint(supernet), args.imgsz)
    backend = backend_for(lut)  # the table's own backend, device and precision: budgets are in its units

    stock_ms = stock_latency(supernet, lut, lut_path, nc, backend, args.timings)
    shares = [float(v) for v in args.budgets.split(",")]
    if not shares or any(not 0 < v <= 2 for v in shares):
        raise SystemExit(f"--budgets takes shares of YOLOv8n's latency in (0, 2], got {args.budgets!r}.")
    print(f"in table units: {', '.join(f'{k} {v:.3f} ms' for k, v in stock_ms.items())}", flush=True)

    def tag(share):  # names the runs of a budget; 1.0 keeps the names of runs from before --budgets
        return "" if share == 1.0 else f"_x{share:g}"

    inherited_v8n, v8n_arch = work / args.name / "yolov8n_inherited", named_archs(supernet).get("yolov8n")
    size_luts = [Path(v) for v in args.size_luts.split(",") if v]
    sizes = [load_lut(v, fingerprint(supernet))["meta"]["imgsz"] for v in size_luts]
    sizes_tag = "_sizes" + "-".join(map(str, [args.imgsz, *sizes])) if size_luts else ""
    select_tag = f"_select{args.select_epochs}" if args.select_epochs else ""
    search_dirs = {share: work / args.name / f"search_v8n{tag(share)}{sizes_tag}{select_tag}" for share in shares}
    select_args = {"batch": args.batch, "workers": 0, "seed": 0, **train_args, **finetune_args}
    searched = {}  # (share, imgsz) -> the best front row of its search at that size
    for share, search in search_dirs.items():
        budget = share * stock_ms["YOLOv8n"]
        if not (search / "best" / "model.pt").is_file():
            print(f"search under {share:g} x YOLOv8n's latency: {budget:.3f} ms", flush=True)
            cmd = [
                sys.executable,
                ROOT / "tools" / "search.py",
                "--weights",
                weights,
                "--data",
                data,
                "--lut",
                lut_path,
                *size_luts,
                "--latency-budget",
                f"{budget:.4f}",
                "--population",
                args.population,
                "--generations",
                args.generations,
                "--out",
                search,
                *(["--resume"] if any(search.rglob("history.csv")) else []),
            ]
            if args.select_epochs:
                select = " ".join(f"{k}={v}" for k, v in select_args.items())
                cmd += ["--select-epochs", args.select_epochs, "--select-args", select]
            subprocess.run(list(map(str, cmd)), check=True)
        if args.select_epochs:  # the search's best/ alone: chosen over sizes and named archs by fine-tuning
            chosen = selected_row(search)
            searched[share, chosen["imgsz"]] = chosen
            continue
        for size in [args.imgsz, *sizes]:  # with --size-luts, each size's best: the ranking across sizes is biased
            found = search / f"imgsz{size}" if size_luts else search
            if (found / "best" / "arch.json").is_file():  # a size whose smallest subnet exceeds the budget has none
                best_arch = json.loads((found / "best" / "arch.json").read_text())
                front = json.loads((found / "pareto.json").read_text())["front"]
                picked = json.loads((search / "best" / "arch.json").read_text()) == best_arch
                row = next(r for r in front if r["arch"] == best_arch)
                searched[share, size] = {**row, "imgsz": size, "dir": str(found / "best"), "search_best": picked}

    common = dict(imgsz=args.imgsz, batch=args.batch, workers=0, device="cpu", plots=False)  # epochs: per row
    common.update(train_args)
    total = supernet_epochs + args.epochs
    searched_rows = {}
    for (share, size), found in searched.items():
        by_size = size_luts and "note" not in found  # the selected best/ is the search's one pick, at whatever size
        label = f"searched{tag(share).replace('_', ' ')}" + (f" {size}px" if by_size else "")
        under = f"searched under {share:g} x YOLOv8n's latency"
        at = {"imgsz": size} if size != args.imgsz else {}  # trained (and scored, timed) at the size it was found at
        stem = f"best{tag(share)}{sizes_tag}{select_tag}" + (f"_{size}px" if by_size else "")
        if size_luts:
            of = ", ".join(map(str, [args.imgsz, *sizes]))
            under += f", at imgsz {size} (of {of}; {'' if found['search_best'] else 'not '}the search's best/)"
        if "note" in found:
            under += f" ({found['note']})"
        searched_rows[f"{label} (a)"] = (
            f"{under}, from scratch (its model.yaml)",
            args.epochs,
            args.name,
            f"{stem}_scratch",
            Path(found["dir"]) / "model.yaml",
            args.epochs,
            at,
        )
        searched_rows[f"{label} (b)"] = (
            f"{under}, inherited + fine-tuned ({supernet_epochs} supernet epochs + {args.epochs}){finetune_note}",
            total,
            args.name,
            f"{stem}_finetune",
            Path(found["dir"]) / "model.pt",
            args.epochs,
            {**finetune_args, **at},
        )
    restart_rows = {  # row -> stock YAML: the stock model trained in (b)'s two stages, the first from scratch
        f"{name} {supernet_epochs} + {args.epochs} ep": cfg for name, cfg in STOCK.items() if name in restart_stock
    }
    rows = {  # name -> (how trained, epochs in all, folder, run stem, model, epochs trained here, own train args)
        **{
            name: ("stock, from scratch", args.epochs, "standalone", name.lower(), cfg, args.epochs, {})
            for name, cfg in STOCK.items()
            if name in short_stock
        },
        **searched_rows,
        **(
            {
                "YOLOv8n (b)": (
                    "YOLOv8n's arch in the supernet, inherited + fine-tuned as (b)",
                    total,
                    args.name,
                    "yolov8n_finetune",
                    inherited_v8n / "model.pt",
                    args.epochs,
                    finetune_args,
                )
            }
            if v8n_arch
            else {}
        ),
        **{
            f"{name} {total} ep": (
                f"stock, from scratch, {total} epochs (as (b) in all)",
                total,
                "standalone",
                name.lower(),
                cfg,
                total,
                {},
            )
            for name, cfg in STOCK.items()
            if name in long_stock
        },
        **{
            name: (
                f"stock, {supernet_epochs} epochs from scratch, then fine-tuned as (b): (b)'s schedule, no supernet",
                total,
                "standalone",
                f"{Path(cfg).stem}_after{supernet_epochs}ep",
                cfg,
                args.epochs,
                finetune_args,
            )
            for name, cfg in restart_rows.items()
        },
    }
    seeds = row_seeds(args.seeds_for, rows, args.seeds)
    rows = {name: row for name, row in rows.items() if seeds[name]}

    if v8n_arch and not (inherited_v8n / "model.pt").is_file():  # BN recalibrated as the search does
        calib = calibration_batches(check_dataset(data, supernet), args.imgsz, 16, CALIB_BATCHES)
        save_subnet(
            supernet, v8n_arch, inherited_v8n, source=str(weights), calib=calib, train_args={"imgsz": args.imgsz}
        )

    runs, dirs, first_dirs = training_commands(
        rows, seeds, restart_rows, work, data, train_args, common, supernet_epochs
    )
    print(f"trainings ({args.jobs} at a time): {', '.join(pending(runs))}", flush=True)
    run_trainings(runs, args.jobs)

    nets = [Model(str(dirs[name, 0] / "weights" / "best.pt")).model.float() for name in rows]
    untrained = [name for name in STOCK if name not in rows]  # timed for the check below (weights: same latency)
    imgsz = {name: row[6].get("imgsz", args.imgsz) for name, row in rows.items()}  # each row at its own size
    with tempfile.TemporaryDirectory() as tmp:
        onnx = []
        for i, (name, net) in enumerate(
            [*zip(rows, nets), *((name, stock_model(STOCK[name], nc)) for name in untrained)]
        ):
            path = str(Path(tmp) / f"{i}.onnx")
            onnx.append((path, model_onnx(net, imgsz.get(name, args.imgsz), 1, path)))
        ratios = np.array(  # [timing, model], in units of YOLOv8n's latency: every model is timed against it
            [
                [s["median_us"] / 1000 for s in measure_interleaved(backend, onnx, (ref, 1000.0), rounds=args.rounds)]
                for ref in (backend.compile(*onnx[[*rows, *untrained].index("YOLOv8n")]) for _ in range(args.timings))
            ]
        )

    table = []
    for (name, (how, epochs, *_)), timed, net in zip(rows.items(), ratios.T, nets):
        maps = [final_metrics(dirs[name, seed])[0] for seed in range(seeds[name])]
        tests = [
            split_metrics(dirs[name, seed], data, "test", imgsz[name])[0]
            for seed in range(seeds[name] if has_test else 0)
        ]
        table.append(
            {
                "model": name,
                "trained": how,
                "epochs": epochs,
                "imgsz": imgsz[name],
                "params_M": round(sum(q.numel() for q in net.parameters()) / 1e6, 3),
                "map50_95_seeds": [round(v, 4) for v in maps],
                "map50_95": round(float(np.mean(maps)), 4),
                "seed_spread": round(float(np.ptp(maps)), 4),
                **(
                    {
                        "test_map50_95_seeds": [round(v, 4) for v in tests],
                        "test_map50_95": round(float(np.mean(tests)), 4),
                        "test_seed_spread": round(float(np.ptp(tests)), 4),
                    }
                    if tests
                    else {}
                ),
                "latency_vs_yolov8n": round(float(np.median(timed)), 3),
                "latency_vs_yolov8n_timings": [round(float(v), 3) for v in timed],
                "cpu_min": round(
                    sum(
                        train_seconds(dirs[name, seed])
                        + (train_seconds(first_dirs[name, seed]) if (name, seed) in first_dirs else 0)
                        for seed in range(seeds[name])
                    )
                    / seeds[name]
                    / 60,
                    1,
                ),
            }
        )
    supernet_min = round(train_seconds(supernet_dir) / 60, 1)
    for r in table:
        if r["model"].endswith("(b)"):  # (b) carries the supernet's training
            r["cpu_min"] = round(r["cpu_min"] + supernet_min, 1)

    seeds_note = f" ({args.seeds_for})" if args.seeds_for else ""
    print(
        f"\n{backend.info['backend']} {backend.info['version']} {backend.info['device']} {backend.info['precision']} "
        f"({backend.info['device_name']}), "
        f"imgsz {args.imgsz}, batch {args.batch}, {args.seeds} seeds{seeds_note}{args_note}{finetune_note}"
    )
    print(
        f"{'model':>16} {'epochs':>6} {'CPU min':>7} {'params M':>8} {'mAP50-95':>9} {'spread':>7} "
        f"{'test':>7} {'spread':>7} {'x YOLOv8n':>9} {'range':>9}  trained"
    )
    for r in table:
        test = f"{r['test_map50_95']:>7.4f} {r['test_seed_spread']:>7.4f}" if has_test else f"{'-':>7} {'-':>7}"
        timed = r["latency_vs_yolov8n_timings"]
        print(
            f"{r['model']:>16} {r['epochs']:>6} {r['cpu_min']:>7.1f} {r['params_M']:>8.2f} "
            f"{r['map50_95']:>9.4f} {r['seed_spread']:>7.4f} {test} {r['latency_vs_yolov8n']:>9.2f} "
            f"{f'{min(timed):.2f}-{max(timed):.2f}':>9}  {r['trained']}"
        )
    print(f"latency: median and range of {args.timings} interleaved timings of {args.rounds} rounds")
    if has_test:
        print(
            "mAP50-95 on val (what the search ranked by) and on test (seen by no training, search or checkpoint choice)"
        )
    # the stock models are timed twice (start: against the table's reference; end: against YOLOv8n): where their ratios
    # disagree, something loaded the machine during one of them, and every ratio of the final table is suspect
    start = {k: v / stock_ms["YOLOv8n"] for k, v in stock_ms.items()}
    final = {r["model"]: r["latency_vs_yolov8n"] for r in table if r["model"] in start}
    final.update({name: round(float(np.median(t)), 3) for name, t in zip(untrained, ratios.T[len(nets) :])})
    moved = max(abs(final[k] / start[k] - 1) for k in final)
    if moved > TIMINGS_AGREE:
        print(
            f"WARNING: the stock models' latency ratios moved by up to {moved:.0%} between the start "
            f"({', '.join(f'{k} {v:.2f}x' for k, v in start.items())}) and the final timing "
            f"({', '.join(f'{k} {v:.2f}x' for k, v in final.items())}): the machine was busy; run the same command "
            "again on an idle machine to re-time (finished searches and trainings are reused)."
        )
    result = {
        **run_record("benchmarks/bench_vs_yolo.py", argv, backend),
        "versions": stack_versions(),
        "settings": vars(args),
        "stock_latency_table_ms": stock_ms,
        "budgets": {  # what each search ran under: a reused one was timed in an earlier run
            f"{share:g}": json.loads(next(search.rglob("search_args.json")).read_text())["latency_budget"]
            for share, search in search_dirs.items()
        },
        "searched": {f"{share:g}" + (f"@{size}" if size_luts else ""): row for (share, size), row in searched.items()},
        "supernet_epochs": supernet_epochs,
        "supernet_recipe": supernet.yaml.get("nas"),  # its nas: block (phases, band, ...) as trained
        "supernet_cpu_min": supernet_min,
        "rows": table,
        "timing_check": {"start_vs_yolov8n": start, "final_vs_yolov8n": final, "agree": moved <= TIMINGS_AGREE},
    }
    finetune_tag = f"_finetune{train_args_tag(finetune_args)}" if finetune_args else ""
    # no suffix: lr0-0.002 would read as a file extension
    out = Path(args.results) / f"vs_yolo_{args.name}{sizes_tag}{select_tag}{args_tag}{finetune_tag}"
    write_json(f"{out}.json", result)
    settings = f"{args.train_args}{finetune_note}".strip(", ")
    searched_at = f" (searched at {', '.join(map(str, [args.imgsz, *sizes]))})" if size_luts else ""
    title = f"{args.name}: preset data, imgsz {args.imgsz}{searched_at}, OpenVINO CPU f32"
    title += f"\n{settings}" if settings else ""
    plot(table, f"{out}.png", title)
    print(f"written {out}.json and .png")


def plot(rows, path, title):
    """mAP50-95 on test where the data has a test split (no choice was made on it), else on val, vs latency."""
    from nas_plugin.files import pyplot, save_figure

    plt = pyplot()
    split = "test" if "test_map50_95" in rows[0] else "val"
    key = "test_" if split == "test" else ""

    fig, ax = plt.subplots(figsize=(7, 5))
    labelled = []
    for r in rows:
        colour = "tab:blue" if r["model"].startswith("searched") else "tab:grey"
        x, y, timed = r["latency_vs_yolov8n"], r[f"{key}map50_95"], r["latency_vs_yolov8n_timings"]
        xerr = [[x - min(timed)], [max(timed) - x]]
        ax.errorbar(x, y, xerr=xerr, yerr=r[f"{key}seed_spread"] / 2, fmt="o", color=colour, capsize=3)
        # a point next to one already labelled (YOLOv8n (b) beside YOLOv8n 90 ep) takes its label to the left
        crowded = any(abs(x - px) < 0.05 and abs(y - py) < 0.03 for px, py in labelled)
        ax.annotate(
            f"{r['model']} ({r['epochs']} ep)",
            (x, y),
            textcoords="offset points",
            xytext=(-6, -10) if crowded else (4, 4),
            ha="right" if crowded else "left",
            fontsize=8,
        )
        labelled.append((x, y))
    ax.axvline(1.0, color="tab:grey", ls="--", lw=0.8)
    ax.set(
        xlabel="latency / YOLOv8n's (median of interleaved timings; bar = their range)",
        ylabel=f"mAP50-95 ({split}, mean of seeds; bar = seed spread)",
    )
    ax.set_title(title, fontsize=9)
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    from nas_plugin.cli import run

    run(main, kept="finished trainings are kept and an interrupted one resumes: run the same command again")
