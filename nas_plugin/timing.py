"""Timing models on a backend: export to ONNX, compile, and time in interleaved rounds against a reference.

Used by the latency table (`lut_build`), its validation (`lut_report`), the measured-latency search, the demo and
the benchmarks. Whole subnets are extracted and exported as Ultralytics deploys them (fused, decoded boxes). Every
timing is relative to a reference model timed in the same rounds (see `measure_interleaved`): a table's reference
is its smallest subnet, scaled to that subnet's latency when the table was built.
"""

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from .backends import get_backend, timing_stats
from .extract import extract
from .integration import export_ready, torch_to_onnx

OPSET = 17
ROUNDS = 15  # interleaved rounds for whole models (a table's entries take `build_lut(rounds=)`)
REFERENCE_WARMUP, REFERENCE_REPEATS = 20, 200  # a table's reference subnet is timed alone once, at length


def backend_for(lut):
    """The backend, device, precision and threads a table was measured with; warns when this machine's device is
    another model than the table's, whose timings would be in another device's units."""
    from ultralytics.utils import LOGGER

    m = lut["meta"]
    backend = get_backend(m["backend"], m["device"], m["precision"], m["threads"])
    here = backend.info.get("device_name")
    if m.get("device_name") and here and here != m["device_name"]:
        LOGGER.warning(
            f"the latency table was measured on {m['device_name']!r}, this machine's {m['device']} is {here!r}: "
            "timings here are not in the table's units (stock models' latency ratios differed by up to 0.1x between "
            "two CPU models); build the table on the device that will run the detector."
        )
    return backend


def export_onnx(module, input_shapes, path):
    """Export `module` (eval) to ONNX at fixed shapes and simplify it with onnxslim; returns the example inputs."""
    import onnx
    import onnxslim

    inputs = tuple(torch.rand(s, generator=torch.Generator().manual_seed(0)) for s in input_shapes)
    with torch.no_grad():
        torch_to_onnx(module.eval(), inputs, path, OPSET, [f"x{i}" for i in range(len(inputs))])
    onnx.save(onnxslim.slim(onnx.load(path)), path)
    return [x.numpy() for x in inputs]


def subnet_onnx(supernet, arch, imgsz, batch, path):
    """Export `arch` as Ultralytics deploys it (extracted, fused, decoded boxes) to ONNX; returns its inputs."""
    return model_onnx(extract(supernet, arch), imgsz, batch, path)


def model_onnx(model, imgsz, batch, path):
    """Export a static detection model as Ultralytics deploys it (fused in place, decoded boxes) to ONNX; returns its
    inputs."""
    static = export_ready(model.fuse(verbose=False))
    return export_onnx(static, [(batch, static.yaml.get("channels", 3), imgsz, imgsz)], path)


def measure_interleaved(backend, models, reference, rounds=ROUNDS, per_round=10, warmup=10, progress=None):
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


def measure_models(supernet, models, lut, backend, rounds=ROUNDS, desc="models", total=None):
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
        reference = (compile_reference(supernet, lut, backend, tmp), lut["reference"]["median_us"])
        with TQDM(total=rounds, desc=f"timing {desc} ({len(exported)} models, interleaved rounds)") as bar:
            return measure_interleaved(backend, exported, reference, rounds=rounds, progress=bar)


def measure_against_first(backend, models, imgsz, rounds):
    """Whole-model latency stats of static detection models at `imgsz`, batch 1, timed in interleaved rounds against
    the first of them compiled once more (1000 = its latency in the same rounds): for comparing models with no
    latency table. 10 calls per round up to 320 px, 3 above."""
    with tempfile.TemporaryDirectory() as tmp:
        exported = []
        for i, model in enumerate(models):
            path = str(Path(tmp) / f"{i}.onnx")
            exported.append((path, model_onnx(model, imgsz, 1, path)))
        reference = (backend.compile(*exported[0]), 1000.0)
        per_round = 10 if imgsz <= 320 else 3
        return measure_interleaved(backend, exported, reference, rounds=rounds, per_round=per_round)


def run_record(script, argv, backend):
    """What a benchmark's result file says of the run: date, machine (with the device `backend` times on) and the
    command as typed (`argv` None: this process's own arguments)."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {backend.info['device_name']}",
        "command": " ".join(["python", script, *(argv if argv is not None else sys.argv[1:])]),
    }


def measure_subnets(supernet, archs, lut, backend, rounds=ROUNDS, desc="subnets"):
    """Whole-model latency stats of every arch, as `measure_models` times them (extracted one at a time)."""
    return measure_models(supernet, (extract(supernet, a) for a in archs), lut, backend, rounds, desc, total=len(archs))


def compile_reference(supernet, lut, backend, tmp):
    """Compile the table's reference subnet (the smallest) on `backend`."""
    path = str(Path(tmp) / "reference.onnx")
    inputs = subnet_onnx(supernet, lut["reference"]["arch"], lut["meta"]["imgsz"], lut["meta"]["batch"], path)
    return backend.compile(path, inputs)
