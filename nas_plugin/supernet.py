"""Glue between a built supernet (an Ultralytics DetectionModel with elastic layers) and the plain-data space."""

import hashlib
import weakref
from pathlib import Path

import torch
from torch import nn

from .channels import count_choices, has_width, live_indices
from .errors import NASError
from .integration import layer_op, yolo_model
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
    n is `yolov8n` too), so a stock model the space contains is picked by its usual name. A unit's `width: 1.0` is
    dropped where the supernet offers no width choice (its `widths` lists set to [1.0]), so one YAML's archs serve
    both. A YAML named without its scale letter is built at its first scale, as Ultralytics does, and named so."""
    scale = model.yaml.get("scale") or next(iter(model.yaml.get("scales") or {}), "")
    space = space_from_model(model)
    named = {name: _fixed_width_dropped(arch, space) for name, arch in (model.yaml.get("archs") or {}).items()}
    return {**named, **{f"{name}{scale}": arch for name, arch in named.items() if scale}}


def _fixed_width_dropped(arch, space):
    arch = {section: [dict(unit) for unit in arch.get(section, [])] for section in arch}
    for (_, _, unit), (_, _, choices) in zip(units(arch), units(space)):
        if unit.get("width") == 1.0 and "width" not in choices["per_unit"]:
            del unit["width"]
    return arch


def layer_units(model, arch):
    """[(elastic layer, its unit)] pairing the elastic layers of `model` with the units of an arch (or of the space:
    the same shape) in gene order. Torch-free readers (`lut`) use the `layer` index each space unit records."""
    return [(m, unit) for (_, _, m), (_, _, unit) in zip(elastic_layers(model), units(arch))]


def layer_shapes(model, imgsz, batch=1):
    """{layer index: (input shapes, output shape)} from one forward pass at `imgsz` (shapes do not depend on the
    arch: narrower layers zero-pad to the full width)."""
    shapes, hooks = {}, []
    for m in model.model:

        def pre(mod, args):
            x = args[0]
            shapes[mod.i] = [tuple(t.shape) for t in (x if isinstance(x, list) else [x])]

        def post(mod, args, out):
            shapes[mod.i] = (shapes[mod.i], tuple(out.shape) if isinstance(out, torch.Tensor) else None)

        hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(batch, model.yaml.get("channels", 3), imgsz, imgsz))
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return shapes


def input_weights(m):
    """Per input of layer `m`, the weights reading it (`ElasticModule.input_weights`); None for a layer that cannot
    follow a narrower input (any stock layer)."""
    return getattr(m, "input_weights", lambda: None)()


_GRAPHS = weakref.WeakKeyDictionary()  # model -> its graph (set_arch runs every training step)


def model_graph(model):
    """The `nas_plugin.channels` graph of a model: per layer its inputs, channel rule and full output channels.

    Raises NASError when a layer that cannot follow a narrower input reads a layer with width choices."""
    if model in _GRAPHS:
        return _GRAPHS[model]
    shapes = layer_shapes(model, int(model.stride.max()) * 2)
    graph = []
    for m in model.model:
        f = [m.f] if isinstance(m.f, int) else list(m.f)
        f = [j if j >= 0 else m.i + j for j in f]
        node = {"f": [j for j in f if j >= 0], "op": layer_op(m), "c2": (shapes[m.i][1] or (0, 0))[1]}
        if isinstance(m, ElasticModule):
            node["op"] = "unit"
            if len(m.widths) > 1:
                node["channels"] = list(m.width_channels)
        graph.append(node)
    counts = count_choices(graph)
    for m, node in zip(model.model, graph):
        narrow = [j for j in node["f"] if len(counts[j]) > 1]
        if narrow and node["op"] not in ("concat", "same") and input_weights(m) is None:
            raise NASError(
                f"layer {m.i} ({type(m).__name__}) reads layer {narrow[0]}, which has width choices, but cannot follow "
                "a narrower input; make it an elastic row (ElasticC2f, ElasticConv, ElasticSPPF, ElasticDetect) or "
                f"give layer {narrow[0]} a single width."
            )
    _GRAPHS[model] = graph
    return graph


def set_arch(model, arch):
    """Activate `arch` in every elastic layer of `model`, and the live input widths in layers that follow them;
    returns the canonical arch."""
    space = space_from_model(model)
    arch = validate_arch(space, arch)
    for m, unit in layer_units(model, arch):
        m.set_active(unit)
    graph = model_graph(model)
    if has_width(graph):
        live = live_indices(graph, space, arch)
        for m, node in zip(model.model, graph):
            if hasattr(m, "set_input_live"):
                m.set_input_live([live[j] for j in node["f"]])
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
