"""Validation of a latency table against whole subnets measured end to end (tools/validate_lut.py)."""

import statistics
from pathlib import Path

from .files import pyplot, save_figure, write_json
from .lut import predict_us
from .space import max_arch, min_arch, random_arch
from .supernet import space_from_model
from .timing import backend_for, measure_subnets


def error_summary(errors):
    """Count, signed mean (the table's bias), MAPE, worst and share within ±10 % of relative errors
    (predicted / measured - 1)."""
    return {
        "n": len(errors),
        "mean_error": statistics.mean(errors),
        "mape": statistics.mean(abs(e) for e in errors),
        "worst": max(errors, key=abs),
        "within_10pct": sum(abs(e) <= 0.10 for e in errors) / len(errors),
    }


def validate_lut(supernet, lut, samples=50, seed=0, rounds=30, out_dir=None):
    """Predicted vs measured latency of max, min and `samples` random subnets; returns (and writes) a report."""
    from scipy.stats import spearmanr

    space = space_from_model(supernet)
    m = lut["meta"]
    named = [("max", max_arch(space)), ("min", min_arch(space))] + [
        (f"random seed {seed + i}", random_arch(space, seed=seed + i)) for i in range(samples)
    ]
    stats = measure_subnets(supernet, [a for _, a in named], lut, backend_for(lut), rounds, desc="validation subnets")
    rows = []
    for (name, arch), st in zip(named, stats):
        pred = predict_us(lut, space, arch)
        rows.append(
            {
                "name": name,
                "arch": arch,
                "predicted_us": pred,
                "measured_us": st["median_us"],
                "measured_iqr_us": st["iqr_us"],
                "error": pred / st["median_us"] - 1,
            }
        )
    summary = error_summary([r["error"] for r in rows])
    report = {
        "lut": {
            k: m[k]
            for k in (
                "backend",
                "device",
                "device_name",
                "precision",
                "threads",
                "threads_used",
                "batch",
                "imgsz",
                "date",
            )
        },
        "subnets": len(rows),
        **{k: summary[k] for k in ("within_10pct", "mape", "mean_error")},
        "spearman": float(spearmanr([r["predicted_us"] for r in rows], [r["measured_us"] for r in rows]).statistic),
        "worst": [
            {k: r[k] for k in ("name", "predicted_us", "measured_us", "error")}
            for r in sorted(rows, key=lambda r: -abs(r["error"]))[:5]
        ],
        "rows": rows,
    }
    if out_dir:
        out = Path(out_dir)
        write_json(out / "lut_validation.json", report)
        plot_validation(report, out / "lut_validation.png")
    return report


def plot_validation(report, path):
    """Scatter of predicted vs measured latency with the +-10% band; max and min subnets labelled."""
    plt = pyplot()

    rows = report["rows"]
    meas = [r["measured_us"] / 1000 for r in rows]
    pred = [r["predicted_us"] / 1000 for r in rows]
    lo, hi = 0.9 * min(meas + pred), 1.1 * max(meas + pred)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="tab:green", alpha=0.15, label="±10%")
    ax.plot([lo, hi], [lo, hi], color="tab:green", lw=1)
    ax.scatter(meas, pred, s=14, color="tab:blue", label="random subnets")
    for r, x, y in zip(rows, meas, pred):
        if r["name"] in ("max", "min"):
            ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, -10))
    lut = report["lut"]
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)")
    ax.set_title(
        f"{lut['backend']} {lut['device']} {lut['precision']}, imgsz {lut['imgsz']}: "
        f"{report['within_10pct']:.0%} within ±10%,\n"
        f"MAPE {report['mape']:.1%}, Spearman {report['spearman']:.3f} ({report['subnets']} subnets)",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)
