"""Latency lookup tables as plain data: entry keys for an arch, prediction, and refusal of foreign tables.

A table holds one measured entry per distinct piece a subnet is made of, at one image size on one device:
every fixed layer (`layer0`, `layer6`, ...), every block choice of a per-block unit at the first block position
and at the later ones (`layer2/b0/kernel=5/expand=4`, `layer2/b1/...`: later blocks share input shape and stride),
and every depth x choice of a per-unit unit (`layer9/depth=2/kernel=5/act=mish`). A subnet's latency is the sum of
its entries, corrected by a line (`scale`, `offset_us`) fitted on whole subnets measured end to end, which absorbs
call overhead and the fusion between neighbouring blocks that per-block timing cannot see. All timings are scaled to
the table's reference subnet (`reference`: its arch and latency at build time), timed alongside every measurement.

No torch here: the search reads tables with this module alone.
"""

import itertools
import json
import math

from .errors import NASError
from .space import units, validate_arch

FORMAT = "nas_plugin.lut/1"
META_KEYS = ("backend", "version", "device", "device_name", "cpu", "precision", "threads", "batch", "imgsz", "date", "fingerprint", "supernet", "fixed_layers")


def _choice_key(names, values):
    return "/".join(f"{n}={v}" for n, v in zip(names, values))


def unit_keys(layer, unit, a):
    """Entry keys of one arch unit `a` of space unit `unit` (at YAML layer `layer`)."""
    if unit["per_block"]:
        names = list(unit["per_block"])
        return [f"layer{layer}/b{min(i, 1)}/" + _choice_key(names, [a[n][i] for n in names]) for i in range(a["depth"])]
    names = list(unit["per_unit"])
    return [f"layer{layer}/depth={a['depth']}/" + _choice_key(names, [a[n] for n in names])]


def arch_keys(space, arch, fixed_layers):
    """All entry keys whose sum is the latency of `arch`."""
    keys = [f"layer{i}" for i in fixed_layers]
    for section, i, unit in units(space):
        keys += unit_keys(unit["layer"], unit, arch[section][i])
    return keys


def all_keys(space, fixed_layers):
    """Every key a table for `space` needs: {key: (kind, layer, choices)} with kind 'fixed', 'block' or 'unit'."""
    keys = {f"layer{i}": ("fixed", i, {}) for i in fixed_layers}
    for _, _, unit in units(space):
        layer = unit["layer"]
        if unit["per_block"]:
            names = list(unit["per_block"])
            positions = (0, 1) if unit["depth"][-1] > 1 else (0,)
            for pos, values in itertools.product(positions, itertools.product(*unit["per_block"].values())):
                keys[f"layer{layer}/b{pos}/" + _choice_key(names, values)] = ("block", layer, {"position": pos, **dict(zip(names, values))})
        else:
            names = list(unit["per_unit"])
            for depth, values in itertools.product(unit["depth"], itertools.product(*unit["per_unit"].values())):
                keys[f"layer{layer}/depth={depth}/" + _choice_key(names, values)] = ("unit", layer, {"depth": depth, **dict(zip(names, values))})
    return keys


def raw_sum_us(lut, space, arch):
    """Sum of the table entries of `arch` (no calibration); a missing entry is an error, never 0."""
    total = 0.0
    for key in arch_keys(space, arch, lut["meta"]["fixed_layers"]):
        entry = lut["entries"].get(key)
        if entry is None:
            raise NASError(f"latency table has no entry {key!r}; it is incomplete (rebuild with --resume) or for another supernet.")
        total += entry["median_us"]
    return total


def predict_us(lut, space, arch):
    """Predicted latency of `arch` in microseconds: calibrated sum of its entries."""
    cal = lut.get("calibration") or {"scale": 1.0, "offset_us": 0.0}
    return cal["scale"] * raw_sum_us(lut, space, validate_arch(space, arch)) + cal["offset_us"]


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _check_numbers(lut, path):
    """Every timing a prediction reads must be a finite number > 0, and the calibration line finite."""
    where = [("reference", lut["reference"])] + [(f"entry {k!r}", e) for k, e in lut["entries"].items()]
    for name, entry in where:
        value = entry.get("median_us") if isinstance(entry, dict) else entry
        if not _positive(value):
            raise NASError(f"latency table {str(path)!r}: {name} has median_us {value!r}; every latency must be a finite number > 0 (rebuild the table).")
    cal = lut.get("calibration")
    if cal is not None:
        for key in ("scale", "offset_us"):
            v = cal.get(key) if isinstance(cal, dict) else None
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise NASError(f"latency table {str(path)!r}: calibration {key} is {v!r}; it must be a finite number (rebuild the table).")


def load_lut(path, fingerprint=None, imgsz=None):
    """Read a table and check it fits the supernet of `fingerprint` (`supernet.fingerprint`) and `imgsz`."""
    try:
        with open(path) as f:
            lut = json.load(f)
    except FileNotFoundError:
        raise NASError(f"latency table {str(path)!r} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NASError(f"latency table {str(path)!r} is not valid JSON ({e}).") from None
    if not isinstance(lut, dict) or lut.get("format") != FORMAT or not isinstance(lut.get("entries"), dict):
        raise NASError(f"{str(path)!r} is not a nas_plugin latency table (expected format {FORMAT!r}).")
    missing = [k for k in META_KEYS if k not in lut.get("meta", {})]
    if missing:
        raise NASError(f"latency table {str(path)!r} lacks metadata {missing}; rebuild it with tools/build_lut.py.")
    if "median_us" not in lut.get("reference", {}):
        raise NASError(f"latency table {str(path)!r} has no measured reference subnet; rebuild it with tools/build_lut.py.")
    _check_numbers(lut, path)
    meta = lut["meta"]
    if fingerprint is not None and meta["fingerprint"] != fingerprint:
        raise NASError(
            f"latency table {str(path)!r} was built for another supernet (fingerprint {meta['fingerprint']}, this "
            f"supernet's is {fingerprint}: another space, scale or class count); build one for it with tools/build_lut.py."
        )
    if imgsz is not None and meta["imgsz"] != imgsz:
        raise NASError(f"latency table {str(path)!r} was measured at imgsz {meta['imgsz']}, not {imgsz}; build one at {imgsz}.")
    return lut
