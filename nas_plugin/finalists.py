"""The search's finalists ranked by a short fine-tune (`tools/search.py --select-epochs N`).

Inherited accuracy after a short supernet run ranks subnets of one size well enough to find a front, but it ranks sizes,
and the stock arch against a smaller subnet, the other way round from fine-tuning: on the benchmark data the 160 px pick
inherited the highest score and, fine-tuned 70 epochs, scored 0.03 below both the 192 px pick and YOLOv8n's arch from
the same supernet (benchmarks/RESULTS.md). So what the search hands over (its `best/`, or each size's, and the named
archs within the budgets, `named/near_budget/` among them) is fine-tuned a few epochs with stock `yolo train`, and
`best/` becomes the one with the highest val score. Each finalist trains in `out/finalists/<label>-<hash>/`, named by
its arch, size, data and training settings, so a re-run reuses finished trainings and resumes interrupted ones.
"""

import csv
import hashlib
import io
import json
from pathlib import Path

from .files import copy_dir, write_json, write_text
from .run_files import YOLO_CLI, final_metrics, run_trainings, train_command
from .space import arch_key

SELECT_SETS = ("data", "model", "project", "name", "exist_ok", "epochs", "imgsz", "resume")
COLUMNS = ("label", "dir", "imgsz", "latency_ms", "inherited", "map50_95", "map50", "run", "selected")


def _roots(out):
    """The search directories under `out`: one per size (`imgsz<N>/`) after a search over sizes, else `out`."""
    sizes = sorted(out.glob("imgsz*/search_args.json"), key=lambda p: int(p.parent.name[5:]))
    return [p.parent for p in sizes] or [out]


def _front_rows(root):
    """{arch key: row} of what the search in `root` scored: its front, and the named archs it wrote."""
    rows = {}
    for name, key in (("pareto.json", "front"), ("named.json", "named")):
        path = root / name
        if path.is_file():
            rows.update({arch_key(r["arch"]): r for r in json.loads(path.read_text())[key]})
    return rows


def finalists(out, objective="map50_95"):
    """Rows of what the search in `out` hands over: each search directory's `best/` and `named/<name>/`, one row per
    distinct (arch, imgsz), with its label, directory, imgsz, latency (timed whole where it was) and inherited
    `objective`."""
    out, found, seen = Path(out), [], set()
    for root in _roots(out):
        imgsz = json.loads((root / "search_args.json").read_text())["imgsz"]
        scored = _front_rows(root)
        prefix = "" if root == out else f"{root.name}_"
        dirs = [("best", root / "best")] + [(f"named_{d.name}", d) for d in sorted((root / "named").glob("*/"))]
        for label, d in dirs:
            if not (d / "model.pt").is_file():
                continue
            arch = json.loads((d / "arch.json").read_text())
            if label == "best":  # best/ is a copy of a front member, and the selection may replace it: keep that
                d = next((f.parent for f in root.glob("front/*/arch.json") if json.loads(f.read_text()) == arch), d)
            key = (arch_key(arch), imgsz)
            if key in seen:
                continue
            seen.add(key)
            row = scored.get(key[0], {})
            found.append(
                {
                    "label": prefix + label,
                    "dir": str(d),
                    "arch": arch,
                    "imgsz": imgsz,
                    "latency_ms": row.get("measured_ms", row.get("latency_ms")),
                    "inherited": row.get(objective),
                }
            )
    return found


def select_finalists(out, data, epochs, train_args=None, objective="map50_95", jobs=1):
    """Fine-tune every finalist of the search in `out` for `epochs` with stock `yolo train` (`train_args` added),
    `jobs` at a time; copy the one with the highest val `objective` to `out/best/`; write `out/finalists.csv|json`.
    Returns the rows, the selected one marked."""
    from ultralytics.utils import LOGGER

    out = Path(out)
    rows = finalists(out, objective)
    args = {"plots": False, **(train_args or {})}  # plots would fetch a font; the user may still ask for them
    commands = {}
    for r in rows:  # a run is named by what it trains, so a run of another arch or setting is never reused
        what = json.dumps([r["arch"], r["imgsz"], epochs, args, str(data)], sort_keys=True)
        r["run"] = str(out / "finalists" / f"{r['label']}-{hashlib.sha1(what.encode()).hexdigest()[:8]}")
        commands[r["label"]] = train_command(
            YOLO_CLI, r["run"], Path(r["dir"]) / "model.pt", data, **args, epochs=epochs, imgsz=r["imgsz"]
        )
    LOGGER.info(
        f"select: fine-tuning {len(rows)} finalists {[r['label'] for r in rows]} for {epochs} epochs each, "
        f"{jobs} at a time (logs in {out / 'finalists'})"
    )
    run_trainings(commands, jobs=jobs)
    for r in rows:
        r["map50_95"], r["map50"] = final_metrics(r["run"])
    winner = max(rows, key=lambda r: r[objective])
    for r in rows:
        r["selected"] = r is winner
    copy_dir(winner["dir"], out / "best")
    meta = {"objective": objective, "epochs": epochs, "train_args": args, "finalists": rows}
    write_json(out / "finalists.json", meta)
    write_text(out / "finalists.csv", _csv(rows))
    for r in rows:
        latency = "" if r["latency_ms"] is None else f", {r['latency_ms']:.2f} ms"
        inherited = "" if r["inherited"] is None else f"inherited {r['inherited']:.4f}, "
        mark = "  <- best/" if r["selected"] else ""
        LOGGER.info(f"select: {r['label']} ({r['imgsz']} px{latency}): {inherited}fine-tuned {r[objective]:.4f}{mark}")
    return rows


def _csv(rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
