"""Latency lookup tables as plain data: entry keys for an arch, prediction, and refusal of foreign tables.

A table holds one measured entry per distinct piece a subnet is made of, at one image size on one device:
every fixed layer (`layer0`, `layer6`, ...), every block choice of a unit with per-block choices at the first block
position and at the later ones (`layer2/b0/kernel=5/expand=4`, `layer2/b1/...`: later blocks share input shape and
stride), and every depth x choice of a unit without (`layer9/depth=2/kernel=5/act=mish`). The keys come from the
plain-data space (`unit_entries`); the elastic module of each unit builds what is timed (`latency_entry`). A subnet's
latency is the sum of its entries, corrected by a fit on whole subnets measured end to end
(`scale` x sum + `per_param_us` x the entries' weight count + `offset_us`): the offset absorbs per-call overhead and
the fusion between neighbouring blocks that per-block timing cannot see; the weight term, what an entry timed on its
own hides: its weights stay in cache across repeated calls, while a whole model reads them afresh (the largest
subnets run 10-20% slower than their sum says, the mid-sized ones faster; tables without weight counts fit a line);
the fit minimizes relative error, so the smallest subnets count as much as the largest (`lut_build.fit_calibration`).
Tables that record each layer's feature-map level (`meta["levels"]`: P1..P5 by output stride, `head`) scale each
level's entries on their own (`scale_by_level`, replacing `scale`): how much of a block's time alone it keeps inside
a whole model depends on its feature-map size (at 320 px on an Intel CPU the stem, P1, keeps about a sixth of it and
the P4 blocks nine tenths), which one scale for all ranks subnets wrongly.
All timings are scaled to the table's reference subnet (`reference`: its arch and latency at build time), timed
alongside every measurement.

No torch here: the search reads tables with this module alone.
"""

import itertools
import json
import math

from .channels import count_choices, input_choices, live_indices
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


def _c1_key(c1):
    return "c1=" + "+".join(str(c) for c in (c1 if isinstance(c1, tuple) else (c1,)))


def unit_entries(unit, c1s=None):
    """{key: choices} of one space unit's table entries. Per-block choices are timed one block at a time, at the
    stage's first position and at a later one (later blocks share input shape and stride); a unit without them is
    timed whole, per depth. Per-unit choices are part of every key of their unit.

    `c1s` lists the unit's possible input channel counts when they vary (a layer before it has width choices): the
    first block (per-block units) or the unit is then timed per input width too. A unit whose space entry names
    `entry_input` fields is split instead: the part reading the input is timed per input width x those fields
    (`layer4/in/c1=32/act=relu/width=0.5`), the rest per choice as before (`layer4/body/depth=2/...`).
    """
    layer, per_unit, per_block = unit["layer"], unit["per_unit"], unit["per_block"]
    entries = {}
    inputs = [(None, "")] if c1s is None else [(c, _c1_key(c) + "/") for c in c1s]
    if per_block:
        positions = (0, 1) if unit["depth"][-1] > 1 else (0,)
        for pos, u, b in itertools.product(
            positions, itertools.product(*per_unit.values()), itertools.product(*per_block.values())
        ):
            choices = {**dict(zip(per_unit, u)), **dict(zip(per_block, b))}
            for c1, c1_key in inputs if pos == 0 else [(None, "")]:
                c1_choice = {} if c1 is None else {"c1": c1}
                entries[f"layer{layer}/b{pos}/{c1_key}" + _choice_key(choices)] = {
                    "position": pos,
                    **c1_choice,
                    **choices,
                }
        return entries
    split = c1s is not None and "entry_input" in unit
    if split:
        fields = {n: per_unit[n] for n in unit["entry_input"]}
        for (c1, c1_key), u in itertools.product(inputs, itertools.product(*fields.values())):
            choices = dict(zip(fields, u))
            entries[f"layer{layer}/in/{c1_key}" + _choice_key(choices)] = {"part": "input", "c1": c1, **choices}
        inputs = [(None, "body/")]
    for (c1, c1_key), depth, u in itertools.product(inputs, unit["depth"], itertools.product(*per_unit.values())):
        choices = {"depth": depth, **dict(zip(per_unit, u))}
        extra = {"part": "body"} if split else {} if c1 is None else {"c1": c1}
        entries[f"layer{layer}/{c1_key}" + _choice_key(choices)] = {**extra, **choices}
    return entries


def unit_keys(unit, a, c1=None):
    """Entry keys of arch unit `a` of space unit `unit` whose input has `c1` channels (None: the input never varies):
    one per active block, or one for the whole unit (two, input part and body, for a split unit)."""
    per_unit = {n: a[n] for n in unit["per_unit"]}
    c1_key = "" if c1 is None else _c1_key(c1) + "/"
    if unit["per_block"]:
        blocks = [{**per_unit, **{n: a[n][i] for n in unit["per_block"]}} for i in range(a["depth"])]
        return [
            f"layer{unit['layer']}/b{min(i, 1)}/{c1_key if i == 0 else ''}" + _choice_key(c)
            for i, c in enumerate(blocks)
        ]
    whole = _choice_key({"depth": a["depth"], **per_unit})
    if c1 is not None and "entry_input" in unit:
        part = _choice_key({n: a[n] for n in unit["entry_input"]})
        return [f"layer{unit['layer']}/in/{c1_key}{part}", f"layer{unit['layer']}/body/{whole}"]
    return [f"layer{unit['layer']}/{c1_key}{whole}"]


def _inputs(meta):
    """(graph, its count choices) of a table's metadata; (None, None) for tables of spaces without width."""
    graph = meta.get("graph")
    return graph, (count_choices(graph) if graph else None)


def arch_entries(space, arch, meta):
    """[(layer, key)] of all entries whose sum is the latency of `arch`, for a table with metadata `meta`."""
    graph, counts = _inputs(meta)
    live = [len(c) for c in live_indices(graph, space, arch)] if graph else None

    def c1(layer):
        if not graph or input_choices(graph, layer, counts) is None:
            return None
        return tuple(live[j] for j in graph[layer]["f"])

    entries = [(i, f"layer{i}" + (f"/{_c1_key(c)}" if (c := c1(i)) else "")) for i in meta["fixed_layers"]]
    for section, i, unit in units(space):
        c = c1(unit["layer"])
        entries += [(unit["layer"], k) for k in unit_keys(unit, arch[section][i], None if c is None else c[0])]
    return entries


def arch_keys(space, arch, meta):
    """All entry keys whose sum is the latency of `arch`, for a table with metadata `meta`."""
    return [key for _, key in arch_entries(space, arch, meta)]


def all_keys(space, meta):
    """Every key a table for `space` needs: {key: (kind, layer, choices)} with kind 'fixed' or 'unit'."""
    graph, counts = _inputs(meta)

    def c1s(layer):
        return input_choices(graph, layer, counts) if graph else None

    keys = {}
    for i in meta["fixed_layers"]:
        options = c1s(i)
        if options is None:
            keys[f"layer{i}"] = ("fixed", i, {})
        else:
            keys.update({f"layer{i}/{_c1_key(c)}": ("fixed", i, {"c1": c}) for c in options})
    for _, _, unit in units(space):
        options = c1s(unit["layer"])
        entries = unit_entries(unit, None if options is None else [c[0] for c in options])
        keys.update({key: ("unit", unit["layer"], choices) for key, choices in entries.items()})
    return keys


def raw_sums(lut, space, arch):
    """({level: latency in us}, weight count) summed over the table entries of `arch`, uncalibrated: per feature-map
    level for tables that record levels, else all under "all". A missing entry is an error, never 0. Tables from
    before weight counts give 0 weights."""
    levels = lut["meta"].get("levels")
    sums, params = {}, 0.0
    for layer, key in arch_entries(space, arch, lut["meta"]):
        entry = lut["entries"].get(key)
        if entry is None:
            raise NASError(
                f"latency table has no entry {key!r}; it is incomplete (rebuild with --resume) or for another supernet."
            )
        level = levels[layer] if levels else "all"
        sums[level] = sums.get(level, 0.0) + entry["median_us"]
        params += entry.get("params", 0)
    return sums, params


def calibrated_us(cal, sums, params):
    """The calibration fit applied to a subnet's summed entries (`raw_sums`; no calibration: the plain sum)."""
    if not cal:
        return sum(sums.values())
    by_level = cal.get("scale_by_level")
    scaled = sum(by_level[g] * us for g, us in sums.items()) if by_level else cal["scale"] * sum(sums.values())
    return scaled + cal.get("per_param_us", 0.0) * params + cal["offset_us"]


def predict_us(lut, space, arch):
    """Predicted latency of `arch` in microseconds: its entries summed and calibrated."""
    return calibrated_us(lut.get("calibration"), *raw_sums(lut, space, validate_arch(space, arch)))


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _check_numbers(lut, path):
    """Every timing a prediction reads must be a finite number > 0, and the calibration finite."""
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
        cal = cal if isinstance(cal, dict) else {}
        numbers = {k: cal.get(k, 0.0 if k == "per_param_us" else None) for k in ("scale", "offset_us", "per_param_us")}
        numbers.update({f"scale_by_level[{g!r}]": v for g, v in cal.get("scale_by_level", {}).items()})
        for key, v in numbers.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise NASError(
                    f"latency table {str(path)!r}: calibration {key} is {v!r}; "
                    "it must be a finite number (rebuild the table)."
                )


def measured_apart(meta, other):
    """The metadata keys in which two tables' measurements differ, besides image size, date and source: tables that
    differ in none are of one supernet on one device, backend and setting, and can share a unit."""
    return [k for k in META_KEYS if k not in ("imgsz", "date", "supernet") and meta.get(k) != other.get(k)]


def units_id(lut):
    """What names a table's units: the table whose reference was timed alone (its imgsz and build date). A table
    built `units_of` another carries that table's id in its reference; tables of one id compare in milliseconds."""
    return lut["reference"].get("units_of") or {"imgsz": lut["meta"]["imgsz"], "date": lut["meta"]["date"]}


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
