"""Subnet extraction: a supernet + an arch -> a standard Ultralytics model YAML and a model with inherited weights."""

import copy
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from . import __version__
from .calibration import recalibrate_bn
from .channels import has_width, live_indices
from .elastic_ops import inherit_state
from .errors import NASError
from .files import write_json, write_text
from .integration import detection_model, make_divisible, save_checkpoint
from .modules import ElasticModule
from .space import SECTIONS
from .supernet import input_weights, layer_units, model_graph, set_arch, space_from_model

_KEPT_KEYS = ("nc", "activation", "channels", "reg_max", "end2end")  # top-level YAML keys a subnet keeps


def row_channels(c2, width):
    """The YAML `c2` that `parse_model` scales (`make_divisible(c2 * width, 8)`) to `c2` channels."""
    row = int(c2 / width + 1e-6)
    if make_divisible(row * width, 8) != c2:
        raise NASError(f"no YAML channel count gives {c2} channels at width_multiple {width}.")
    return row


def subnet_yaml(model, arch):
    """The model YAML dict of `arch`: elastic rows become static ones (with the chosen channel counts); the scale is
    resolved into multiples."""
    arch = set_arch(model, arch)
    src = model.yaml
    depth, width = src.get("depth_multiple", 1.0), src.get("width_multiple", 1.0)
    if src.get("scales"):
        depth, width, _ = src["scales"][src.get("scale") or next(iter(src["scales"]))]
    cfg = {k: copy.deepcopy(src[k]) for k in _KEPT_KEYS if k in src}
    cfg.update(depth_multiple=depth, width_multiple=width)
    rows = copy.deepcopy(src["backbone"] + src["head"])
    for m, unit in layer_units(model, arch):
        n, name, args = m.static_row(unit)
        c2 = rows[m.i][3][0]
        if m.out_channels(unit) != m.full_channels():
            c2 = row_channels(m.out_channels(unit), width)
        rows[m.i] = [rows[m.i][0], n, name, [c2, *args]]
    for m in model.model:
        if hasattr(m, "static_type"):  # a head that follows its inputs' widths: the stock head of that name
            rows[m.i][2] = m.static_type
    nb = len(src["backbone"])
    cfg["backbone"], cfg["head"] = rows[:nb], rows[nb:]
    return cfg


def _gathers(model, arch):
    """Per layer, {key: {dim: indices}} of the weights the subnet takes that are not leading slices: what the layer's
    own width picks, and the weights reading a narrowed input, at that input's live channels."""
    graph = model_graph(model)
    live = live_indices(graph, space_from_model(model), arch) if has_width(graph) else None
    units = {m.i: unit for m, unit in layer_units(model, arch)}
    out = {}
    for m, node in zip(model.model, graph):
        gathers = out[m.i] = m.inherit_gathers(units[m.i]) if m.i in units else {}
        for j, keys in zip(node["f"], input_weights(m) or []):
            if live and len(live[j]) < graph[j]["c2"]:
                for key in keys:
                    gathers.setdefault(key, {})[1] = live[j]
    return out


def extract(model, arch):
    """A static DetectionModel computing exactly what `model` computes with `arch` active, with inherited weights."""
    cfg = subnet_yaml(model, arch)
    gathers = _gathers(model, set_arch(model, arch))
    static = detection_model(cfg)
    for src, dst in zip(model.model, static.model):
        try:
            if isinstance(src, ElasticModule) or gathers[src.i]:
                inherit_state(dst, src, gathers[src.i])
            else:
                dst.load_state_dict(src.state_dict())
        except (RuntimeError, NASError) as e:
            raise NASError(f"layer {src.i} ({src.type}) of the subnet does not match the supernet: {e}") from e
    static.names = dict(model.names)
    static.args = getattr(model, "args", {})
    return static.eval()


def yaml_text(cfg, header=""):
    """Model YAML text in Ultralytics' layout: scalars first, then one flow-style row per line with its index."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [yaml.safe_dump({k: v}, sort_keys=False).rstrip() for k, v in cfg.items() if k not in SECTIONS]
    index = 0
    for section in SECTIONS:
        lines.append(f"{section}:")
        for row in cfg[section]:
            lines.append(f"  - {yaml.safe_dump(row, default_flow_style=True, width=1 << 16).strip()} # {index}")
            index += 1
    return "\n".join(lines) + "\n"


def save_subnet(model, arch, out_dir, source="", calib=None, train_args=None, exist_ok=False):
    """Write `out_dir/{arch.json, model.yaml, model.pt}` for `arch` of supernet `model`; returns the static model.

    With `calib` (image batches from `calibration.calibration_batches`) the subnet's BatchNorm statistics are
    re-estimated on them first; without, it keeps the supernet's (shared by all subnets, right for none).
    `train_args` (e.g. imgsz, data) become the defaults of `yolo val/predict` for the checkpoint.
    """
    arch = set_arch(model, arch)
    static = extract(model, arch)
    if calib:
        recalibrate_bn(static, calib)
    calib_images = sum(len(b) for b in calib or [])
    return write_subnet(static, arch, space_from_model(model), out_dir, source, calib_images, train_args, exist_ok)


def write_subnet(static, arch, space, out_dir, source="", calib_images=0, train_args=None, exist_ok=False):
    """Write the files of an extracted (and maybe recalibrated on `calib_images` images) subnet; returns it.

    The three files are written into a temporary directory and moved in together: a new `out_dir` appears whole,
    and an existing one (only with `exist_ok`) gets its three files replaced one rename each, its other files kept.
    A non-empty `out_dir` is refused without `exist_ok`, and `source`'s own file is never overwritten.
    """
    out = Path(out_dir)
    if source and (out / "model.pt").resolve() == Path(str(source)).resolve():
        raise NASError(
            f"--out {str(out)!r} would overwrite the supernet {str(source)!r} "
            "with the subnet's model.pt; choose another directory."
        )
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not exist_ok):
        what = "is a file" if out.is_file() else "is not empty"
        raise NASError(
            f"output directory {str(out)!r} {what}; "
            "choose another --out, or pass --force to replace its arch.json, model.yaml and model.pt."
        )
    nas = {
        "arch": arch,
        "space": space,
        "supernet": str(source),
        "bn_calibration_images": calib_images,
        "nas_plugin": __version__,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        write_json(tmp / "arch.json", arch)
        write_text(
            tmp / "model.yaml",
            yaml_text(static.yaml, f"Subnet extracted by nas_plugin {__version__} from {source or 'a supernet'}"),
        )
        save_checkpoint(static, tmp / "model.pt", train_args, nas=nas)
        if out.is_dir():
            for name in ("arch.json", "model.yaml", "model.pt"):
                os.replace(tmp / name, out / name)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return static
