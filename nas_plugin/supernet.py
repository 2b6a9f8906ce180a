"""Glue between a built supernet (an Ultralytics DetectionModel with elastic layers) and the plain-data space."""

import hashlib
from pathlib import Path

from torch import nn

from .errors import NASError
from .integration import yolo_model
from .modules import YAML_MODULES, ElasticModule
from .space import SECTIONS, arch_key, units, validate_arch

_NOT_A_SUPERNET = (
    f"{{}} has no elastic layers "
    f"({', '.join(c.__name__ for c in YAML_MODULES if issubclass(c, ElasticModule))}); pass a "
    "supernet YAML or a checkpoint trained from one."
)


def elastic_layers(model):
    """[(section, layer index, module)] for every elastic layer of a DetectionModel, in YAML order."""
    n_backbone = len(model.yaml["backbone"])
    return [(SECTIONS[m.i >= n_backbone], m.i, m) for m in model.model if isinstance(m, ElasticModule)]


def space_from_model(model):
    """The model's search space as plain data; raises NASError for a model with no elastic layers."""
    layers = elastic_layers(model)
    if not layers:
        raise NASError(_NOT_A_SUPERNET.format(model.yaml.get("yaml_file", "this model")))
    space = {s: [] for s in SECTIONS}
    for section, i, m in layers:
        space[section].append({"layer": i, **m.space_entry()})
    return space


def fingerprint(model):
    """Short hash of everything that changes a timing: the space and every layer's type, inputs, weight shapes and
    strides (so another scale or class count differs); latency tables built for one supernet refuse another."""
    layers = [
        [
            m.i,
            m.type,
            m.f,
            {k: list(v.shape) for k, v in m.state_dict().items()},
            [list(c.stride) for c in m.modules() if isinstance(c, nn.Conv2d)],
        ]
        for m in model.model
    ]
    return hashlib.sha256(arch_key({"space": space_from_model(model), "layers": layers}).encode()).hexdigest()[:16]


def named_archs(model):
    """{name: arch} from the supernet YAML's `archs:`, each also under its name + the model's scale (`yolov8` at scale
    n is `yolov8n` too), so a stock model the space contains is picked by its usual name."""
    scale = model.yaml.get("scale") or ""
    named = model.yaml.get("archs") or {}
    return {**named, **{f"{name}{scale}": arch for name, arch in named.items() if scale}}


def layer_units(model, arch):
    """[(elastic layer, its unit)] pairing the elastic layers of `model` with the units of an arch (or of the space:
    the same shape) in gene order. Torch-free readers (`lut`) use the `layer` index each space unit records."""
    return [(m, unit) for (_, _, m), (_, _, unit) in zip(elastic_layers(model), units(arch))]


def set_arch(model, arch):
    """Activate `arch` in every elastic layer of `model`; returns the canonical arch."""
    arch = validate_arch(space_from_model(model), arch)
    for m, unit in layer_units(model, arch):
        m.set_active(unit)
    return arch


def active_arch(model):
    """The arch currently active in `model`."""
    arch = {s: [] for s in SECTIONS}
    for section, _, m in elastic_layers(model):
        arch[section].append(dict(m.active))
    return arch


def load_model(source):
    """A DetectionModel from a model YAML (random init) or an Ultralytics checkpoint; raises NASError if missing."""
    path = Path(str(source))
    if path.suffix not in (".yaml", ".yml", ".pt"):
        raise NASError(f"model {str(source)!r} must be a .yaml model file or a .pt checkpoint.")
    if path.suffix == ".pt" and not path.is_file():  # Ultralytics would try to download an unknown .pt name
        raise NASError(f"weights file {str(source)!r} does not exist.")
    try:
        model = yolo_model(source)
    except FileNotFoundError:
        raise NASError(f"model YAML {str(source)!r} does not exist.") from None
    except TypeError as e:  # Ultralytics' one error for an empty, truncated or foreign .pt
        if path.suffix != ".pt":
            raise
        raise NASError(
            f"weights file {str(source)!r} is not a loadable checkpoint (empty, truncated or not an Ultralytics model)."
        ) from e
    return model.float().eval()


def load_supernet(source):
    """Like `load_model`, but the model must have elastic layers."""
    model = load_model(source)
    if not elastic_layers(model):
        raise NASError(_NOT_A_SUPERNET.format(repr(str(source))))
    return model
