"""Latency lookup tables as plain data: entry keys for an arch, prediction, and refusal of foreign tables.

A table holds one measured entry per distinct piece a subnet is made of, at one image size on one device:
every fixed layer (`layer0`, `layer6`, ...), every block choice of a unit with per-block choices at the first block
position and at the later ones (`layer2/b0/kernel=5/expand=4`, `layer2/b1/...`: later blocks share input shape and
stride), and every depth x choice of a unit without (`layer9/depth=2/kernel=5/act=mish`). The keys come from the
plain-data space (`unit_entries`); the elastic module of each unit builds what is timed (`latency_entry`). A subnet's
latency is the sum of its entries, corrected by a line (`scale`, `offset_us`) fitted on whole subnets measured end to
end, which absorbs call overhead and the fusion between neighbouring blocks that per-block timing cannot see. All
timings are scaled to the table's reference subnet (`reference`: its arch and latency at build time), timed alongside
every measurement.

No torch here: the search reads tables with this module alone.
"""

import itertools
import json
import math

from .errors import NASError
from .space import units, validate_arch

FORMAT = "nas_plugin.lut/1"
META_KEYS = (
    "backend",
    "version",
    "device",
    "device_name",
    "cpu",
    "precision",
    "threads",
    "batch",
    "imgsz",
    "date",
    "fingerprint",
    "supernet",
    "fixed_layers",
)


def _choice_key(choices):
    return "/".join(f"{n}={v}" for n, v in choices.items())


def unit_entries(unit):
    """{key: choices} of one space unit's table entries. Per-block choices are timed one block at a time, at the
    stage's first position and at a later one (later blocks share input shape and stride); a unit without them is
    timed whole, per depth. Per-unit choices are part of every key of their unit."""
    layer, per_unit, per_block = unit["layer"], unit["per_unit"], unit["per_block"]
    entries = {}
    if per_block:
        positions = (0, 1) if unit["depth"][-1] > 1 else (0,)
        for pos, u, b in itertools.product(
            positions, itertools.product(*per_unit.values()), itertools.product(*per_block.values())
        ):
            choices = {**dict(zip(per_unit, u)), **dict(zip(per_block, b))}
            entries[f"layer{layer}/b{pos}/" + _choice_key(choices)] = {"position": pos, **choices}
    else:
        for depth, u in itertools.product(unit["depth"], itertools.product(*per_unit.values())):
            choices = dict(zip(per_unit, u))
            entries[f"layer{layer}/depth={depth}/" + _choice_key(choices)] = {"depth": depth, **choices}
    return entries


def unit_keys(unit, a):
    """Entry keys of arch unit `a` of space unit `unit`: one per active block, or one for the whole unit."""
    per_unit = {n: a[n] for n in unit["per_unit"]}
    if unit["per_block"]:
        blocks = [{**per_unit, **{n: a[n][i] for n in unit["per_block"]}} for i in range(a["depth"])]
        return [f"layer{unit['layer']}/b{min(i, 1)}/" + _choice_key(c) for i, c in enumerate(blocks)]
    return [f"layer{unit['layer']}/depth={a['depth']}/" + _choice_key(per_unit)]


def arch_keys(space, arch, fixed_layers):
    """All entry keys whose sum is the latency of `arch`."""
    keys = [f"layer{i}" for i in fixed_layers]
    for section, i, unit in units(space):
        keys += unit_keys(unit, arch[section][i])
    return keys


def all_keys(space, fixed_layers):
    """Every key a table for `space` needs: {key: (kind, layer, choices)} with kind 'fixed' or 'unit'."""
    keys = {f"layer{i}": ("fixed", i, {}) for i in fixed_layers}
    for _, _, unit in units(space):
        keys.update({key: ("unit", unit["layer"], choices) for key, choices in unit_entries(unit).items()})
    return keys


def raw_sum_us(lut, space, arch):
    """Sum of the table entries of `arch` (no calibration); a missing entry is an error, never 0."""
    total = 0.0
    for key in arch_keys(space, arch, lut["meta"]["fixed_layers"]):
        entry = lut["entries"].get(key)
        if entry is None:
            raise NASError(
                f"latency table has no entry {key!r}; it is incomplete (rebuild with --resume) or for another supernet."
            )
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
            raise NASError(
                f"latency table {str(path)!r}: {name} has median_us {value!r}; "
                "every latency must be a finite number > 0 (rebuild the table)."
            )
    cal = lut.get("calibration")
    if cal is not None:
        for key in ("scale", "offset_us"):
            v = cal.get(key) if isinstance(cal, dict) else None
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise NASError(
                    f"latency table {str(path)!r}: calibration {key} is {v!r}; "
                    "it must be a finite number (rebuild the table)."
                )


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
        raise NASError(
            f"latency table {str(path)!r} has no measured reference subnet; rebuild it with tools/build_lut.py."
        )
    _check_numbers(lut, path)
    meta = lut["meta"]
    if fingerprint is not None and meta["fingerprint"] != fingerprint:
        raise NASError(
            f"latency table {str(path)!r} was built for another supernet (fingerprint {meta['fingerprint']}, this "
            f"supernet's is {fingerprint}: another space, scale or class count); "
            "build one for it with tools/build_lut.py."
        )
    if imgsz is not None and meta["imgsz"] != imgsz:
        raise NASError(
            f"latency table {str(path)!r} was measured at imgsz {meta['imgsz']}, not {imgsz}; build one at {imgsz}."
        )
    return lut
