"""NSGA-II search (pymoo) over the space's integer encoding: maximise accuracy, minimise latency, within budgets.

The search sees two small interfaces: `evaluate(archs) -> [{'map50', 'map50_95', 'params', 'gflops'}]` and
`latency(archs) -> [ms]`, both called once per generation with every new subnet of it (batched, so they can be
spread over devices later). Archs that decode to the same subnet (they differ only in inactive genes) are one
individual for pymoo's duplicate elimination and one row of the history: nothing is evaluated twice.

Every generation rewrites history.csv (every evaluated subnet) and pareto.csv/json/png atomically. Resume replays
the search from the start with the same seed, taking every evaluation from history.csv, so it reaches exactly the
state and the front of an uninterrupted run and then continues.
"""

import csv
import io
import json
from pathlib import Path

import numpy as np

from .errors import NASError
from .files import pyplot, save_figure, write_json, write_text
from .space import arch_key, bounds, decode, encode, max_arch, min_arch

COLUMNS = ("generation", "arch", "map50_95", "map50", "latency_ms", "params", "gflops", "feasible")
OBJECTIVES = ("map50_95", "map50")
CALIB_BATCHES = (
    4  # BN recalibration on 64 train images: Kendall tau 0.91 against 1024 images, 32 gave 0.78 (bench_bn_calibration)
)
LATENCY_MODES = ("lut", "measure")  # predicted by the table, or whole subnets timed
POPULATION, GENERATIONS = 50, 20
VAL_IMAGES = 500  # subnets are ranked on this many seeded val images; the front is re-scored on all
SBX_PROB, SBX_ETA, PM_ETA = 0.9, 15, 20  # pymoo's NSGA-II defaults for real variables, here rounded to choice indices
HV_REF_MARGIN = 1.1  # without a latency budget the hypervolume's reference latency is 1.1x the slowest seen
SHORT_OF_BUDGET = 0.9  # a front ending below this share of the latency budget leaves the rest unused: said so


def meets_budgets(row, budgets):
    """Whether a row (latency_ms, params, gflops) is within every budget given."""
    return all(budgets.get(k) is None or row[k] <= budgets[k] for k in ("latency_ms", "params", "gflops"))


def non_dominated(rows, objective, latency="latency_ms"):
    """Rows no other row beats on both (higher objective, lower `latency`: predicted, or `measured_ms`); sorted by
    that latency."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if not rows:
        return []
    F = np.array([[-r[objective], r[latency]] for r in rows])
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return sorted((rows[i] for i in front), key=lambda r: r[latency])


def hypervolume(rows, objective, ref_latency):
    """Area dominated by the front in (accuracy from 0, latency up to `ref_latency`)."""
    from pymoo.indicators.hv import HV

    pts = [[-r[objective], r["latency_ms"]] for r in rows if r["latency_ms"] < ref_latency]
    return float(HV(ref_point=np.array([0.0, ref_latency]))(np.array(pts))) if pts else 0.0


def _parse(column, text):
    """One history.csv cell back to its value; raises ValueError/TypeError for a damaged one."""
    if column == "arch":
        return json.loads(text)
    if column == "feasible":
        if text not in ("True", "False"):
            raise ValueError(f"feasible is {text!r}, not True or False")
        return text == "True"
    return int(text) if column in ("generation", "params") else float(text)


class History:
    """Every evaluated subnet, keyed by canonical arch; read back from history.csv on resume."""

    def __init__(self, path):
        self.path, self.rows = Path(path), {}

    def load(self):
        if self.path.exists():
            with open(self.path, newline="") as f:
                for line, r in enumerate(csv.DictReader(f), 2):
                    try:
                        row = {k: _parse(k, r[k]) for k in COLUMNS}
                    except (KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
                        raise NASError(
                            f"{self.path} is corrupt at line {line} ({type(e).__name__}: {e}); "
                            "it cannot be resumed: move it away "
                            f"(the search starts again) or resume from a backup."
                        ) from None
                    self.rows[arch_key(row["arch"])] = row
        return self

    def save(self):
        write_text(self.path, csv_text(self.rows.values()))


def csv_text(rows):
    """Rows as CSV with the history columns (and any the rows add, e.g. the timed front's `measured_ms`); floats keep
    every digit (csv writes repr), so resume reads them exactly."""
    rows = list(rows)
    extra = [k for k in (rows[0] if rows else {}) if k not in COLUMNS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS + tuple(extra))
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "arch": json.dumps(row["arch"], separators=(",", ":"))})
    return buf.getvalue()


def arch_duplicates(space):
    """pymoo duplicate elimination by decoded arch (inactive genes ignored)."""
    from pymoo.core.duplicate import ElementwiseDuplicateElimination

    def key(individual):
        return arch_key(decode(space, np.asarray(individual.X).round().astype(int)))

    return ElementwiseDuplicateElimination(cmp_func=lambda a, b: key(a) == key(b))


def run_search(
    space,
    evaluate,
    latency,
    out,
    population=POPULATION,
    generations=GENERATIONS,
    seed=0,
    objective="map50_95",
    budgets=None,
    resume=False,
    log=print,
    progress=None,
):
    """Run NSGA-II; returns (all rows, front rows). Writes history.csv and pareto.* in `out` every generation."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.problems.static import StaticProblem

    budgets = {k: v for k, v in (budgets or {}).items() if v is not None}
    out = Path(out)
    history = History(out / "history.csv")
    if resume:
        history.load()
    ub = np.array(bounds(space))
    n_constr = max(1, len(budgets))
    problem = Problem(n_var=len(ub), n_obj=2, n_ieq_constr=n_constr, xl=np.zeros_like(ub), xu=ub, vtype=int)
    algorithm = NSGA2(
        pop_size=population,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=SBX_PROB, eta=SBX_ETA, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=PM_ETA, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=arch_duplicates(space),
    )
    algorithm.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    ref_latency = budgets.get("latency_ms") or None
    for gen in range(1, generations + 1):
        pop = algorithm.ask()
        archs = [decode(space, x) for x in pop.get("X").round().astype(int)]
        if gen == 1:  # the largest and smallest subnets anchor the front and the plot
            archs[:2] = [max_arch(space), min_arch(space)]
            pop.set("X", np.array([encode(space, a) for a in archs[:2]] + [encode(space, a) for a in archs[2:]]))
        new = list({arch_key(a): a for a in archs if arch_key(a) not in history.rows}.values())
        if new:
            scores, lat = evaluate(new), latency(new)
            for a, s, ms in zip(new, scores, lat):
                row = {
                    "generation": gen,
                    "arch": a,
                    "map50_95": s["map50_95"],
                    "map50": s["map50"],
                    "latency_ms": ms,
                    "params": s["params"],
                    "gflops": s["gflops"],
                }
                history.rows[arch_key(a)] = {**row, "feasible": meets_budgets(row, budgets)}
        rows = [history.rows[arch_key(a)] for a in archs]
        F = np.array([[-r[objective], r["latency_ms"]] for r in rows])
        G = np.array([[r[k] - v for k, v in budgets.items()] or [0.0] for r in rows])
        Evaluator().eval(StaticProblem(problem, F=F, G=G), pop)
        algorithm.tell(infills=pop)
        all_rows = list(history.rows.values())
        front = non_dominated([r for r in all_rows if r["feasible"]], objective)
        ref_latency = ref_latency or HV_REF_MARGIN * max(r["latency_ms"] for r in all_rows)
        write_outputs(out, history, front, objective, budgets, {"max": max_arch(space), "min": min_arch(space)})
        best = max((r[objective] for r in front), default=float("nan"))
        log(
            f"generation {gen}/{generations}: {len(new)} new subnets ({len(all_rows)} evaluated), front {len(front)}, "
            f"best feasible {objective} {best:.4f}, hypervolume {hypervolume(front, objective, ref_latency):.4f}"
        )
        if progress:
            progress.update(1)
    all_rows = list(history.rows.values())
    return all_rows, non_dominated([r for r in all_rows if r["feasible"]], objective)


def pick_best(front, objective, latency_budget=None):
    """(row, met): the most accurate front member; once the front is timed whole (rows with `measured_ms`), the most
    accurate whose measured latency meets `latency_budget`, or, if none does, the fastest measured with met False."""
    if latency_budget is None or "measured_ms" not in front[0]:
        return max(front, key=lambda r: r[objective]), True
    within = [r for r in front if r["measured_ms"] <= latency_budget]
    if within:
        return max(within, key=lambda r: r[objective]), True
    return min(front, key=lambda r: r["measured_ms"]), False


def budget_left_unused(rows, front, latency_budget):
    """(where the front ends in ms, how many evaluated subnets lie between that and `latency_budget`) when the front
    ends below `SHORT_OF_BUDGET` of the budget (by the table's prediction, as the search ranked them), else None: every
    subnet evaluated there inherited a lower score than one faster, so the search hands over less than it may use."""
    if latency_budget is None:
        return None
    end = max(r["latency_ms"] for r in front)
    if end >= SHORT_OF_BUDGET * latency_budget:
        return None
    return end, sum(end < r["latency_ms"] <= latency_budget for r in rows)


def near_budget(rows, front, budgets, objective):
    """The most accurate subnet evaluated between the front's end and the latency budget, within every other budget,
    when the front ends short of it (`budget_left_unused`), else None: inherited accuracy is flat there after a short
    supernet run while fine-tuned accuracy still rises with size (Benchmarks), so it is a finalist beside `best/`."""
    unused = budget_left_unused(rows, front, budgets.get("latency_ms"))
    if unused is None:
        return None
    end = unused[0]
    between = [r for r in rows if r["latency_ms"] > end and meets_budgets(r, budgets)]
    return max(between, key=lambda r: r[objective], default=None)


def write_outputs(out, history, front, objective, budgets, marks):
    """history.csv, pareto.csv, pareto.json and pareto.png for the subnets evaluated so far."""
    history.save()
    write_text(out / "pareto.csv", csv_text(front))
    write_json(out / "pareto.json", {"objective": objective, "budgets": budgets, "front": front})
    plot_front(list(history.rows.values()), front, objective, budgets, marks, out / "pareto.png")


def plot_front(rows, front, objective, budgets, marks, path):
    """All evaluated subnets, the front, the latency budget, and the subnets named in `marks` (e.g. max, min)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.scatter(
        [r["latency_ms"] for r in rows], [r[objective] for r in rows], s=10, color="0.6", label="evaluated subnets"
    )
    ax.plot(
        [r["latency_ms"] for r in front],
        [r[objective] for r in front],
        "o-",
        color="tab:red",
        ms=4,
        label="Pareto front",
    )
    if front and "measured_ms" in front[0]:
        ax.scatter(
            [r["measured_ms"] for r in front],
            [r[objective] for r in front],
            marker="x",
            color="tab:red",
            s=20,
            label="front, timed whole",
        )
    by_key = {arch_key(r["arch"]): r for r in rows}
    for name, arch in marks.items():
        r = by_key.get(arch_key(arch))
        if r:
            ax.annotate(
                f"{name} subnet", (r["latency_ms"], r[objective]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    if budgets.get("latency_ms"):
        ax.axvline(budgets["latency_ms"], color="tab:blue", ls="--", lw=1, label=f"budget {budgets['latency_ms']:g} ms")
    ax.set(xlabel="latency (ms)", ylabel={"map50_95": "mAP50-95", "map50": "mAP50"}.get(objective, objective))
    ax.legend(fontsize=8)
    save_figure(fig, path)
