"""Building a latency table (tools/build_lut.py).

Every entry of `lut.all_keys` becomes a small static module (a fixed layer, or what its elastic layer's
`latency_entry` builds) exported to ONNX at its real input shape and timed by a backend against the table's
reference subnet (`timing`). The table is saved after every entry (atomically), so an interrupted build loses at
most the entry being measured and `resume=True` continues it; whole subnets timed at the end fit the calibration
(`lut.calibrated_us`), for which every entry also records its weight count.
"""

import copy
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
from torch import nn

from .backends import timing_stats
from .channels import has_width
from .errors import NASError
from .files import write_json
from .integration import export_ready
from .lut import FORMAT, META_KEYS, all_keys, load_lut, measured_apart, raw_sums, units_id
from .space import max_arch, min_arch, sized_arch
from .supernet import elastic_layers, fingerprint, layer_shapes, model_graph, space_from_model
from .timing import (
    REFERENCE_REPEATS,
    REFERENCE_WARMUP,
    compile_reference,
    export_onnx,
    measure_interleaved,
    measure_subnets,
    subnet_onnx,
)

REFERENCE_ROUNDS = 30  # interleaved rounds timing a reference against another table's


class _Layer(nn.Module):
    """One fixed layer of a model as a standalone module (multi-input layers take their inputs as arguments)."""

    def __init__(self, layer):
        super().__init__()
        self.layer, self.multi = layer, isinstance(layer.f, list)

    def forward(self, *xs):
        return self.layer(list(xs) if self.multi else xs[0])


def entry_module(model, kind, layer, choices, shapes):
    """(module, input shapes) for one table entry; an entry keyed by input widths (`c1`) reads that many channels."""
    ins, out = shapes[layer]
    c1 = choices.get("c1")
    if c1 is not None:
        ins = [(s[0], c, *s[2:]) for s, c in zip(ins, c1 if isinstance(c1, tuple) else (c1,))]
    m = model.model[layer]
    if kind == "fixed":
        static = m.static_at([s[1] for s in ins]) if hasattr(m, "static_at") else copy.deepcopy(m)
        static.f, static.i = m.f, m.i
        return export_ready(_Layer(static)), ins
    return m.latency_entry(choices, ins, out)


def _params(module):
    return sum(p.numel() for p in module.parameters())


def _levels(shapes, imgsz):
    """Each layer's feature-map level, Ultralytics' P1..P5 by output stride; `head` for a layer without one output map
    (Detect). Latency calibration scales each level on its own (`lut.calibrated_us`)."""
    outs = [shapes[i][1] for i in range(len(shapes))]
    return [f"P{(imgsz // out[2]).bit_length() - 1}" if out and len(out) == 4 else "head" for out in outs]


def _meta(backend, supernet, imgsz, batch, source, shapes):
    graph = model_graph(supernet)  # kept for spaces with width: keys name the input widths an entry sees
    return {
        **{k: backend.info.get(k) for k in ("backend", "version", "device", "device_name", "cpu", "precision")},
        "threads": backend.threads,  # as requested (None: the backend's latency default); threads_used: what it ran
        "threads_used": None,
        "batch": batch,
        "imgsz": imgsz,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "fingerprint": fingerprint(supernet),
        "supernet": str(source),
        "fixed_layers": [m.i for m in supernet.model if m.i not in {i for _, i, _ in elastic_layers(supernet)}],
        "levels": _levels(shapes, imgsz),
        **({"graph": graph} if has_width(graph) else {}),
    }


def _timed_against(supernet, lut, backend, units_of, tmp):
    """The reference subnet's latency stats timed against `units_of`'s reference, in its unit."""
    other_dir = Path(tmp) / "units_of"
    other_dir.mkdir()
    other = (compile_reference(supernet, units_of, backend, other_dir), units_of["reference"]["median_us"])
    path = str(Path(tmp) / "reference_again.onnx")
    inputs = subnet_onnx(supernet, lut["reference"]["arch"], lut["meta"]["imgsz"], lut["meta"]["batch"], path)
    (stats,) = measure_interleaved(backend, [(path, inputs)], other, REFERENCE_ROUNDS)
    return {**stats, "units_of": units_id(units_of)}


_SAME_TABLE = tuple(k for k in META_KEYS if k not in ("date", "supernet"))  # a resumed build must match these


LEVEL_PULL = 0.01  # ridge pull of each level's scale toward the pooled scale, in squared relative error per subnet


def fit_calibration(raw, measured):
    """The calibration {scale, per_param_us, offset_us[, scale_by_level]} of `measured ~ scale x sum + per_param_us x
    weights + offset_us` over `lut.raw_sums` pairs, least squares in relative error: an absolute fit lets the largest
    subnets decide and underpredicted the smallest by 12-17 % in every table (3-5 % relative).

    A fit that would predict a latency <= 0 anywhere in the calibration subnets' range of sums and weights, or scale
    the sum by <= 0 (noisy timings of a few tiny subnets can tilt it that far, or weights that grow with the sum can
    stand in for it), falls back to fewer terms: without weights, then scale alone.
    With sums per feature-map level, each level then gets its own scale in place of `scale`, pulled toward it (ridge,
    LEVEL_PULL: 22 subnets pin 5-6 scales loosely) and kept only if every level's scale and every prediction is > 0.
    A 320 px table on an Intel CPU ranked 52 held-out subnets at Spearman 0.952 with one scale and 0.987 with these
    (benchmarks/RESULTS.md).
    """
    m = np.asarray(measured, dtype=float)
    levels = sorted({g for sums, _ in raw for g in sums})
    by_level = np.array([[sums.get(g, 0.0) for g in levels] for sums, _ in raw])
    sums, weights = by_level.sum(axis=1), np.array([n for _, n in raw], dtype=float)
    x = np.column_stack([sums, weights, np.ones_like(m)]) / m[:, None]
    corners = np.array([[a, b, 1.0] for a in (sums.min(), sums.max()) for b in (weights.min(), weights.max())])
    for terms in ([0, 1, 2], [0, 2], [0]):
        fit = np.zeros(3)
        fit[terms] = np.linalg.lstsq(x[:, terms], np.ones_like(m), rcond=None)[0]
        if fit[0] > 0 and (corners @ fit > 0).all():
            break
    cal = dict(zip(("scale", "per_param_us", "offset_us"), map(float, fit)))
    if len(levels) < 2:
        return cal
    rest = [t for t in terms if t]  # the weight and offset terms the pooled fit kept
    a = np.column_stack([by_level / m[:, None], x[:, rest]])
    pull = np.sqrt(LEVEL_PULL) * np.eye(len(levels), a.shape[1])
    target = np.concatenate([np.ones_like(m), np.full(len(levels), np.sqrt(LEVEL_PULL) * fit[0])])
    solved = np.linalg.lstsq(np.vstack([a, pull]), target, rcond=None)[0]
    scales, other = solved[: len(levels)], np.zeros(3)
    other[rest] = solved[len(levels) :]
    if (scales > 0).all() and (by_level @ scales + other[1] * weights + other[2] > 0).all():
        cal.update(per_param_us=float(other[1]), offset_us=float(other[2]))
        cal["scale_by_level"] = {g: float(v) for g, v in zip(levels, scales)}
    return cal


def calibration(lut, space, archs, measured):
    """The table's calibration: the fit of whole subnets' `measured` latencies and what it was fitted on."""
    raw = [raw_sums(lut, space, a) for a in archs]
    return {
        **fit_calibration(raw, measured),
        "subnets": [
            {"arch": a, "raw_sum_us": sum(sums.values()), "params": n, "measured_us": m}
            for a, (sums, n), m in zip(archs, raw, measured)
        ],
    }


def check_units_of(other, meta):
    """Refuse a table `other` whose units a new table (`meta`) cannot share: another supernet or device."""
    diff = measured_apart(other["meta"], meta)
    if diff:
        raise NASError(
            f"--units-of: that table was measured with other {diff} ({[other['meta'].get(k) for k in diff]} vs "
            f"{[meta[k] for k in diff]}); tables share units only for one supernet on one device and backend."
        )


def build_lut(
    supernet,
    imgsz,
    backend,
    out,
    batch=1,
    resume=False,
    calib_subnets=20,
    rounds=10,
    seed=0,
    source="",
    units_of=None,
):
    """Measure every entry of the supernet's table and fit the calibration; writes `out` as it goes.

    Each entry is timed in `rounds` rounds against the reference subnet (the smallest), whose own latency is
    measured once, first, and kept in the table: resumed builds and later validations are scaled to it. With
    `units_of` (another table of this supernet, e.g. at another imgsz) the reference is timed against that table's
    reference instead, interleaved: the two tables' milliseconds are then one unit, which a search over input sizes
    compares (two references each timed alone minutes apart differ by the machine's drift, 10-30 %).
    """
    from ultralytics.utils import LOGGER, TQDM

    out = Path(out)
    space = space_from_model(supernet)
    stride = int(supernet.stride.max())
    if imgsz % stride:
        raise NASError(
            f"imgsz {imgsz} is not a multiple of the supernet's max stride {stride}; "
            f"use e.g. {imgsz // stride * stride or stride}."
        )
    shapes = layer_shapes(supernet, imgsz, batch)
    meta = _meta(backend, supernet, imgsz, batch, source, shapes)
    if units_of is not None:
        check_units_of(units_of, meta)
    lut = {"format": FORMAT, "meta": meta, "reference": {"arch": min_arch(space)}, "entries": {}, "calibration": None}
    if out.exists():
        if not resume:
            raise NASError(f"{out} exists; pass --resume to continue it, or choose another --out.")
        old = load_lut(out, meta["fingerprint"], imgsz)
        diff = [k for k in _SAME_TABLE if old["meta"].get(k) != meta[k]]
        if diff:
            raise NASError(
                f"cannot resume {out}: it was measured with other {diff} "
                f"({[old['meta'][k] for k in diff]} vs {[meta[k] for k in diff]})."
            )
        lut.update(reference=old["reference"], entries=old["entries"], calibration=old.get("calibration"))
        meta["date"] = old["meta"]["date"]  # when its reference was timed: the table's units (`lut.units_id`)

    keys = all_keys(space, meta)
    todo = {k: v for k, v in keys.items() if k not in lut["entries"]}
    LOGGER.info(
        f"latency table: {len(lut['entries'])} entries done, {len(todo)} to measure on "
        f"{backend.info['device_name']} ({backend.info['precision']})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ref = compile_reference(supernet, lut, backend, tmp)  # compiled once: timed alone first, then the yardstick
        if "median_us" not in lut["reference"]:
            lut["reference"].update(
                timing_stats(ref.time(REFERENCE_WARMUP, REFERENCE_REPEATS), REFERENCE_WARMUP)
                if units_of is None
                else _timed_against(supernet, lut, backend, units_of, tmp)
            )
        reference = (ref, lut["reference"]["median_us"])
        for key, (kind, layer, choices) in TQDM(todo.items(), desc="measuring entries", total=len(todo)):
            module, ins = entry_module(supernet, kind, layer, choices, shapes)
            path = str(Path(tmp) / "entry.onnx")
            (lut["entries"][key],) = measure_interleaved(
                backend, [(path, export_onnx(module, ins, path))], reference, rounds
            )
            lut["entries"][key]["params"] = _params(module)
            lut["meta"]["threads_used"] = backend.info.get("threads")
            write_json(out, lut)

    for key, entry in lut["entries"].items():  # entries of a table resumed from before weight counts
        if "params" not in entry:
            entry["params"] = _params(entry_module(supernet, *keys[key], shapes)[0])
    if calib_subnets and lut["calibration"] is None:
        # max and min anchor the fit, and sizes spread evenly between them cover the ends of the range that uniform
        # archs miss (bench_lut_calibration.py); seeds never overlap the validation's
        archs = [max_arch(space), min_arch(space)] + [
            sized_arch(space, (i + 0.5) / calib_subnets, seed=seed + 10_000 + i) for i in range(calib_subnets)
        ]
        measured = [s["median_us"] for s in measure_subnets(supernet, archs, lut, backend, desc="calibration subnets")]
        lut["calibration"] = calibration(lut, space, archs, measured)
    elif lut["calibration"]:  # a resumed table refits from the subnets it timed: older tables gain today's form
        timed = lut["calibration"]["subnets"]
        lut["calibration"] = calibration(lut, space, [c["arch"] for c in timed], [c["measured_us"] for c in timed])
    write_json(out, lut)
    return lut
