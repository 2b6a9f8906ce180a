"""The search space and architectures as plain data: the one definition that training, latency tables and search read.

A *space* is a dict with one list of *units* per YAML section (`backbone`, `head`); a unit is one elastic YAML row:

    {"layer": 1, "module": "ElasticMBConvStage", "depth": [2, 3, 4],
     "per_block": {"kernel": [3, 5, 7], "expand": [3, 4, 6]}, "per_unit": {}}

Choice lists run from smallest to largest (names keep their YAML order), so `max_arch` takes every last choice.
An *arch* picks one value per choice, mirroring the space's layout; per-block values are lists as long as the depth:

    {"backbone": [{"depth": 2, "kernel": [7, 3], "expand": [6, 4]}, ...],
     "head": [{"depth": 1, "kernel": 5, "act": "mish"}, ...]}

Only active blocks appear in an arch, so two encodings that differ in inactive genes decode to the same arch.
This module imports nothing heavy: the search and latency tools use it without torch.
"""

import copy
import json
import math
import random

from .errors import NASError

SECTIONS = ("backbone", "head")


def units(space):
    """Yield (section, index, unit) for every elastic unit, in gene order."""
    for section in SECTIONS:
        for i, unit in enumerate(space.get(section, [])):
            yield section, i, unit


def _fields(unit):
    return ["depth", *unit["per_unit"], *unit["per_block"]]


def _pick(choices, value, where):
    """Return the choice equal to `value` (so 4.0 becomes the YAML's 4), or raise naming the allowed set."""
    if isinstance(value, bool) or value not in choices:
        raise NASError(f"{where} = {value!r} is not allowed; choose from {choices}.")
    return choices[choices.index(value)]


def validate_arch(space, arch):
    """Check that `arch` fits `space` and return its canonical copy; errors name the field, value and allowed set."""
    if not isinstance(arch, dict):
        raise NASError(f"an arch must be a dict with keys {list(SECTIONS)}, got {type(arch).__name__}.")
    extra = set(arch) - set(SECTIONS)
    if extra:
        raise NASError(f"arch has unknown key(s) {sorted(extra)}; allowed keys are {list(SECTIONS)}.")
    out = {}
    for section in SECTIONS:
        expected = space.get(section, [])
        given = arch.get(section, [])
        if not isinstance(given, list) or len(given) != len(expected):
            n = len(given) if isinstance(given, list) else type(given).__name__
            raise NASError(
                f"arch[{section!r}] has {n} units but the supernet has {len(expected)} elastic {section} units."
            )
        out[section] = []
        for i, (unit, a) in enumerate(zip(expected, given)):
            where = f"arch[{section!r}][{i}]"
            if not isinstance(a, dict):
                raise NASError(f"{where} must be a dict with keys {_fields(unit)}, got {a!r}.")
            missing, unknown = [f for f in _fields(unit) if f not in a], set(a) - set(_fields(unit))
            if missing or unknown:
                problem = f"is missing {missing}" if missing else f"has unknown key(s) {sorted(unknown)}"
                raise NASError(f"{where} {problem}; a {unit['module']} unit has exactly {_fields(unit)}.")
            depth = _pick(unit["depth"], a["depth"], f"{where}['depth']")
            canon = {"depth": depth}
            for key, choices in unit["per_unit"].items():
                canon[key] = _pick(choices, a[key], f"{where}[{key!r}]")
            for key, choices in unit["per_block"].items():
                values = a[key]
                if not isinstance(values, list) or len(values) != depth:
                    raise NASError(
                        f"{where}[{key!r}] = {values!r} must be a list of {depth} values (one per active block)."
                    )
                canon[key] = [_pick(choices, v, f"{where}[{key!r}][{j}]") for j, v in enumerate(values)]
            out[section].append(canon)
    return out


def _arch(space, choose):
    """Build an arch by calling `choose(choices)` for every gene, depth first."""
    arch = {s: [] for s in SECTIONS}
    for section, _, unit in units(space):
        depth = choose(unit["depth"])
        a = {"depth": depth}
        a.update({k: choose(c) for k, c in unit["per_unit"].items()})
        a.update({k: [choose(c) for _ in range(depth)] for k, c in unit["per_block"].items()})
        arch[section].append(a)
    return arch


def max_arch(space):
    """The largest subnet: every last choice."""
    return _arch(space, lambda c: c[-1])


def min_arch(space):
    """The smallest subnet: every first choice."""
    return _arch(space, lambda c: c[0])


def random_arch(space, seed=None, rng=None):
    """A uniformly sampled arch (each gene independently); the same seed gives the same arch on every platform."""
    rng = rng or random.Random(seed)
    return _arch(space, rng.choice)


def sized_arch(space, size, seed=None):
    """A random arch of about relative `size` in [0, 1]: each gene takes its smallest choice with probability
    1 - 2 x size, its largest with 2 x size - 1, else a uniform one (0: `min_arch`, 0.5: `random_arch`, 1: `max_arch`).
    Uniform archs crowd the middle of the latency range; sizes spread evenly cover its ends too."""
    if not 0 <= size <= 1:
        raise NASError(f"size must be in [0, 1], got {size!r}.")
    rng = random.Random(seed)

    def choose(choices):
        u = rng.random()
        if u < 1 - 2 * size:
            return choices[0]
        if u < 1 - 2 * (1 - size):  # only for size > 0.5: 1 - 2 x (1 - size) = 2 x size - 1
            return choices[-1]
        return rng.choice(choices)

    return _arch(space, choose)


def restrict(space, elastic, base=None):
    """The sub-space in which only the (section, field) pairs in `elastic` keep their choices; others are fixed to
    their largest (e.g. the kernel-only phase of progressive shrinking), or to arch `base`'s choices (a per-block
    field to the values `base` uses in that unit)."""
    out = copy.deepcopy(space)
    for section, i, unit in units(out):
        fixed = base[section][i] if base else None
        if (section, "depth") not in elastic:
            unit["depth"] = [fixed["depth"]] if fixed else unit["depth"][-1:]
        for group in ("per_unit", "per_block"):
            for key, choices in unit[group].items():
                if (section, key) not in elastic:
                    used = fixed[key] if fixed and group == "per_block" else [fixed[key]] if fixed else choices[-1:]
                    unit[group][key] = [c for c in choices if c in used]
    return out


def fields(space):
    """Every (section, field) pair of the space, in gene order."""
    return list(dict.fromkeys((section, f) for section, _, unit in units(space) for f in _fields(unit)))


def bounds(space):
    """Inclusive upper bounds of the integer encoding (lower bounds are all 0)."""
    ub = []
    for _, _, unit in units(space):
        ub.append(len(unit["depth"]) - 1)
        ub.extend(len(c) - 1 for c in unit["per_unit"].values())
        for _ in range(unit["depth"][-1]):
            ub.extend(len(c) - 1 for c in unit["per_block"].values())
    return ub


def encode(space, arch):
    """Arch -> list of choice indices (length `len(bounds(space))`); genes of inactive blocks are 0."""
    arch = validate_arch(space, arch)
    x = []
    for section, i, unit in units(space):
        a = arch[section][i]
        x.append(unit["depth"].index(a["depth"]))
        x.extend(c.index(a[k]) for k, c in unit["per_unit"].items())
        for b in range(unit["depth"][-1]):
            x.extend(c.index(a[k][b]) if b < a["depth"] else 0 for k, c in unit["per_block"].items())
    return x


def decode(space, x):
    """List of choice indices -> canonical arch (genes of inactive blocks are ignored)."""
    x = [int(v) for v in x]
    ub = bounds(space)
    if len(x) != len(ub) or any(not 0 <= v <= u for v, u in zip(x, ub)):
        raise NASError(f"encoding {x} does not fit the space: expected {len(ub)} integers within 0..{ub}.")
    genes = iter(x)
    arch = {s: [] for s in SECTIONS}
    for section, _, unit in units(space):
        a = {"depth": unit["depth"][next(genes)]}
        a.update({k: c[next(genes)] for k, c in unit["per_unit"].items()})
        blocks = [{k: c[next(genes)] for k, c in unit["per_block"].items()} for _ in range(unit["depth"][-1])]
        a.update({k: [blk[k] for blk in blocks[: a["depth"]]] for k in unit["per_block"]})
        arch[section].append(a)
    return arch


def count(space, sections=SECTIONS):
    """Exact number of distinct subnets (archs that differ only in inactive blocks count once)."""
    total = 1
    for section, _, unit in units(space):
        if section in sections:
            per_block = math.prod(len(c) for c in unit["per_block"].values())
            total *= sum(per_block**d for d in unit["depth"]) * math.prod(len(c) for c in unit["per_unit"].values())
    return total


def arch_key(arch):
    """A canonical string for an arch (sorted JSON), usable as a dict key for de-duplication."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


def load_arch(spec, space, seed=None, named=None):
    """Resolve an arch spec: 'max', 'min', 'random' (with `seed`), a name in `named` ({name: arch}, e.g. the
    supernet YAML's `archs:`), a dict, or a path to an arch JSON file."""
    named = named or {}
    if isinstance(spec, dict):
        return validate_arch(space, copy.deepcopy(spec))
    if spec in ("max", "min", "random"):
        return {"max": max_arch, "min": min_arch}[spec](space) if spec != "random" else random_arch(space, seed)
    if spec in named:
        return validate_arch(space, copy.deepcopy(named[spec]))
    try:
        with open(spec) as f:
            data = json.load(f)
    except FileNotFoundError:
        names = "".join(f", {n!r}" for n in named)
        raise NASError(f"arch {spec!r} is neither 'max', 'min', 'random'{names} nor an existing JSON file.") from None
    except IsADirectoryError:
        raise NASError(f"arch {spec!r} is a directory; pass the arch.json file inside it.") from None
    except json.JSONDecodeError as e:
        raise NASError(f"arch file {spec!r} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    except UnicodeDecodeError:
        raise NASError(
            f"arch file {spec!r} is not UTF-8 text; an arch file is JSON (e.g. a search's best/arch.json)."
        ) from None
    return validate_arch(space, data)
