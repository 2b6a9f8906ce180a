"""Measuring latency: per-entry tables (tools/build_lut.py) and whole subnets (calibration and validation).

Every entry of `lut.all_keys` becomes a small static module (the block, unit or fixed layer it names) exported to
ONNX at its real input shape and timed by a backend. The table is saved after every entry (atomically), so an
interrupted build loses at most the entry being measured and `resume=True` continues it. Whole subnets are
extracted, exported like Ultralytics exports them (fused, decoded boxes) and timed in interleaved rounds: all are
compiled first, then each round times every model once in turn. Every timing is relative to a reference subnet
timed in the same rounds and scaled to the reference's latency at build time (see `measure_interleaved`).
"""

import copy
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backends import timing_stats
from .errors import NASError
from .files import write_json
from .integration import export_ready
from .lut import FORMAT, all_keys, load_lut, raw_sum_us
from .space import max_arch, min_arch, random_arch
from .supernet import elastic_layers, fingerprint, space_from_model


class _Layer(nn.Module):
    """One fixed layer of a model as a standalone module (multi-input layers take their inputs as arguments)."""

    def __init__(self, layer):
        super().__init__()
        self.layer, self.multi = layer, isinstance(layer.f, list)

    def forward(self, *xs):
        return self.layer(list(xs) if self.multi else xs[0])


def layer_shapes(model, imgsz, batch=1):
    """{layer index: (input shapes, output shape)} from one forward pass at `imgsz` (shapes do not depend on the arch)."""
    shapes, hooks = {}, []
    for m in model.model:
        def pre(mod, args):
            x = args[0]
            shapes[mod.i] = [tuple(t.shape) for t in (x if isinstance(x, list) else [x])]

        def post(mod, args, out):
            shapes[mod.i] = (shapes[mod.i], tuple(out.shape) if isinstance(out, torch.Tensor) else None)

        hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(batch, model.yaml.get("channels", 3), imgsz, imgsz))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def entry_module(model, kind, layer, choices, shapes):
    """(module, input shapes) for one table entry."""
    ins, out = shapes[layer]
    if kind == "fixed":
        return export_ready(_Layer(copy.deepcopy(model.model[layer]))), ins
    m = model.model[layer]
    if kind == "block":
        return m.latency_module(**choices), ins if choices["position"] == 0 else [out]
    return m.latency_module(**choices), ins


def export_onnx(module, input_shapes, path):
    """Export `module` (eval) to ONNX at fixed shapes and simplify it with onnxslim; returns the example inputs."""
    import onnx
    import onnxslim
    from ultralytics.utils.export.engine import torch2onnx

    inputs = tuple(torch.rand(s, generator=torch.Generator().manual_seed(0)) for s in input_shapes)
    names = [f"x{i}" for i in range(len(inputs))]
    with torch.no_grad():
        torch2onnx(module.eval(), inputs, path, opset=17, input_names=names, output_names=None)
    onnx.save(onnxslim.slim(onnx.load(path)), path)
    return [x.numpy() for x in inputs]


def subnet_onnx(supernet, arch, imgsz, batch, path):
    """Export `arch` as Ultralytics deploys it (extracted, fused, decoded boxes) to ONNX; returns its inputs."""
    from .extract import extract

    return model_onnx(extract(supernet, arch), imgsz, batch, path)


def model_onnx(model, imgsz, batch, path):
    """Export a static detection model as Ultralytics deploys it (fused in place, decoded boxes) to ONNX; returns its inputs."""
    static = export_ready(model.fuse(verbose=False))
    return export_onnx(static, [(batch, static.yaml.get("channels", 3), imgsz, imgsz)], path)


def measure_interleaved(backend, models, reference, rounds=15, per_round=10, warmup=10, progress=None):
    """Time (onnx path, inputs) models in interleaved rounds, each relative to `reference` timed in the same round.

    `reference` is (compiled model, its latency in microseconds when the table was built). Every round times
    `per_round` calls of each model in turn, with the reference timed between models; a model's latency in that
    round is its median over the mean of the reference's medians just before and after it, times the reference's
    table latency. This cancels the machine's drift in speed
    (on shared CPUs easily +-10-30% over minutes), which would otherwise mix into every comparison made at
    another time. Returns one stats dict (microseconds, over the rounds) per model.
    """
    ref, ref_us = reference
    compiled = [backend.compile(path, inputs) for path, inputs in models]
    for c in [ref, *compiled]:
        for _ in range(warmup):
            c.run()
    samples = [[] for _ in compiled]

    def median_s(c):
        return statistics.median(c.timed() for _ in range(per_round))

    for _ in range(rounds):
        before = median_s(ref)
        for c, s in zip(compiled, samples):
            t = median_s(c)
            after = median_s(ref)  # the reference right before and right after this model
            s.append(t * ref_us / 1e6 / ((before + after) / 2))
            before = after
        if progress:
            progress.update(1)
    return [timing_stats(s, warmup) | {"calls_per_round": per_round, "relative_to_reference": True} for s in samples]


def reference_model(supernet, lut, backend, tmp):
    """Compile the table's reference subnet (the smallest) on `backend`."""
    path = str(Path(tmp) / "reference.onnx")
    inputs = subnet_onnx(supernet, lut["reference"]["arch"], lut["meta"]["imgsz"], lut["meta"]["batch"], path)
    return backend.compile(path, inputs)


def measure_models(supernet, models, lut, backend, rounds=15, desc="models", total=None):
    """Whole-model latency stats of static detection models (fused in place) at the table's imgsz/batch, in the
    table's units: timed relative to its reference subnet of `supernet` in interleaved rounds. `models` may be a
    generator: each is exported and dropped before the next is made."""
    from ultralytics.utils import TQDM

    imgsz, batch = lut["meta"]["imgsz"], lut["meta"]["batch"]
    with tempfile.TemporaryDirectory() as tmp:
        exported = []
        for i, model in enumerate(TQDM(models, desc=f"exporting {desc}", total=total)):
            path = str(Path(tmp) / f"model{i}.onnx")
            exported.append((path, model_onnx(model, imgsz, batch, path)))
        reference = (reference_model(supernet, lut, backend, tmp), lut["reference"]["median_us"])
        with TQDM(total=rounds, desc=f"timing {desc} ({len(exported)} models, interleaved rounds)") as bar:
            return measure_interleaved(backend, exported, reference, rounds=rounds, progress=bar)


def measure_subnets(supernet, archs, lut, backend, rounds=15, desc="subnets"):
    """Whole-model latency stats of every arch, as `measure_models` times them (extracted one at a time)."""
    from .extract import extract

    return measure_models(supernet, (extract(supernet, a) for a in archs), lut, backend, rounds, desc, total=len(archs))


def _meta(backend, supernet, imgsz, batch, source):
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
    }


_SAME_TABLE = ("backend", "version", "device", "device_name", "cpu", "precision", "threads", "batch", "imgsz", "fingerprint", "fixed_layers")


def build_lut(supernet, imgsz, backend, out, batch=1, resume=False, calib_subnets=20, rounds=10, seed=0, source=""):
    """Measure every entry of the supernet's table and fit the calibration line; writes `out` as it goes.

    Each entry is timed in `rounds` rounds against the reference subnet (the smallest), whose own latency is
    measured once, first, and kept in the table: resumed builds and later validations are scaled to it.
    """
    from ultralytics.utils import LOGGER, TQDM

    out = Path(out)
    space = space_from_model(supernet)
    stride = int(supernet.stride.max())
    if imgsz % stride:
        raise NASError(f"imgsz {imgsz} is not a multiple of the supernet's max stride {stride}; use e.g. {imgsz // stride * stride or stride}.")
    meta = _meta(backend, supernet, imgsz, batch, source)
    lut = {"format": FORMAT, "meta": meta, "reference": {"arch": min_arch(space)}, "entries": {}, "calibration": None}
    if out.exists():
        if not resume:
            raise NASError(f"{out} exists; pass --resume to continue it, or choose another --out.")
        old = load_lut(out, meta["fingerprint"], imgsz)
        diff = [k for k in _SAME_TABLE if old["meta"].get(k) != meta[k]]
        if diff:
            raise NASError(f"cannot resume {out}: it was measured with other {diff} ({[old['meta'][k] for k in diff]} vs {[meta[k] for k in diff]}).")
        lut.update(reference=old["reference"], entries=old["entries"], calibration=old.get("calibration"))

    shapes = layer_shapes(supernet, imgsz, batch)
    todo = {k: v for k, v in all_keys(space, meta["fixed_layers"]).items() if k not in lut["entries"]}
    LOGGER.info(f"latency table: {len(lut['entries'])} entries done, {len(todo)} to measure on {backend.info['device_name']} ({backend.info['precision']})")
    with tempfile.TemporaryDirectory() as tmp:
        if "median_us" not in lut["reference"]:
            path = str(Path(tmp) / "reference.onnx")
            ref = backend.compile(path, subnet_onnx(supernet, lut["reference"]["arch"], imgsz, batch, path))
            lut["reference"].update(timing_stats(ref.time(warmup=20, repeats=200), 20))
        reference = (reference_model(supernet, lut, backend, tmp), lut["reference"]["median_us"])
        for key, (kind, layer, choices) in TQDM(todo.items(), desc="measuring entries", total=len(todo)):
            module, ins = entry_module(supernet, kind, layer, choices, shapes)
            path = str(Path(tmp) / "entry.onnx")
            (lut["entries"][key],) = measure_interleaved(backend, [(path, export_onnx(module, ins, path))], reference, rounds)
            lut["meta"]["threads_used"] = backend.info.get("threads")
            write_json(out, lut)

    if calib_subnets and lut["calibration"] is None:
        # max and min anchor the line's slope over the whole range; random seeds never overlap the validation's
        archs = [max_arch(space), min_arch(space)] + [random_arch(space, seed=seed + 10_000 + i) for i in range(calib_subnets)]
        measured = [s["median_us"] for s in measure_subnets(supernet, archs, lut, backend, desc="calibration subnets")]
        raw = [raw_sum_us(lut, space, a) for a in archs]
        scale, offset = np.polyfit(raw, measured, 1)
        lut["calibration"] = {
            "scale": float(scale),
            "offset_us": float(offset),
            "subnets": [{"arch": a, "raw_sum_us": r, "measured_us": m} for a, r, m in zip(archs, raw, measured)],
        }
        write_json(out, lut)
    return lut
