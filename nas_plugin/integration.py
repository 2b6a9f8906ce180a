"""The Ultralytics adapter: the only plugin code that reaches past Ultralytics' public API.

Other modules may use `ultralytics.YOLO` and `ultralytics.utils.LOGGER` / `TQDM` (tests/test_boundary.py checks it);
everything that depends on an Ultralytics release is a named function or class here, grouped by what it serves:
the patch that makes plugin YAMLs buildable (`install`), building blocks and model I/O, data and validation, ONNX
export, and the trainer facts the supernet callbacks use. Nothing is imported from Ultralytics at module level: the
start-up hook imports this module while `ultralytics.nn` is still importing, and every plugin module imports it.

The patch: `parse_model` resolves a YAML row's module with `globals()` of `ultralytics.nn.tasks` and decides channel
bookkeeping from two sets (`base_modules`, `repeat_modules`) it builds locally on every call. `install` (1) puts the
plugin's classes into that namespace, (2) re-compiles `parse_model` from its own source with the plugin's classes
added to both sets, (3) allows the classes under `ULTRALYTICS_SAFE_LOAD=1` and (4) adds the supernet-training
callbacks to Ultralytics' default callbacks, so the stock `yolo train` samples subnets. Step 2 checks the source's
shape first and raises `IntegrationError` when an Ultralytics release changed it, rather than building wrong models.
`install` is called by the start-up hook, by `nas_plugin.install()` and by the loaders below, never by an import.
"""

import ast
import importlib
import inspect
import sys
import textwrap
from datetime import datetime
from pathlib import Path

TESTED_ULTRALYTICS = ">=8.4.190,<8.5"  # keep in sync with setup.cfg
CHECKPOINT_ARGS = ("imgsz", "data", "task", "single_cls")  # the train args Ultralytics keeps when it loads a checkpoint


class IntegrationError(RuntimeError):
    """Ultralytics' internals differ from what the plugin was built against."""


# --- the patch ---------------------------------------------------------------------------------------------------


def _extended_parse_model(tasks, additions, detect_like=()):
    """Return `tasks.parse_model` re-compiled with `additions[set_name]` class names appended to its module sets and
    `detect_like` names appended to every set literal that lists `Detect` (the heads' channel bookkeeping)."""
    original = getattr(tasks.parse_model, "__nas_plugin_original__", tasks.parse_model)
    try:
        lines, first_line = inspect.getsourcelines(original)
    except (OSError, TypeError) as e:
        raise IntegrationError(
            f"cannot read the source of ultralytics parse_model ({e}); tested with ultralytics{TESTED_ULTRALYTICS}."
        ) from e
    tree = ast.parse(textwrap.dedent("".join(lines)))

    def extend(elts, names):
        elts.extend(ast.copy_location(ast.Name(id=name, ctx=ast.Load()), elts[-1]) for name in names)

    found, detect_sets = set(), 0
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in additions
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "frozenset"
            and len(node.value.args) == 1
            and isinstance(node.value.args[0], ast.Set)
        ):
            extend(node.value.args[0].elts, additions[node.targets[0].id])
            found.add(node.targets[0].id)
        elif detect_like and isinstance(node, ast.Set) and any(getattr(e, "id", None) == "Detect" for e in node.elts):
            extend(node.elts, detect_like)
            detect_sets += 1
    if found != set(additions):
        shape = f"builds {sorted(set(additions) - found)} as `frozenset({{...}})`"
    elif detect_like and detect_sets != DETECT_SETS:
        shape = f"names Detect in {DETECT_SETS} set literals (found {detect_sets})"
    else:
        shape = None
    if shape:
        raise IntegrationError(
            f"ultralytics parse_model no longer {shape}; nas_plugin supports "
            f"ultralytics{TESTED_ULTRALYTICS}. Install a supported version or set NAS_PLUGIN_DISABLE=1."
        )
    ast.increment_lineno(tree, first_line - 1)  # tracebacks point at the real lines of tasks.py
    namespace = {}
    exec(compile(tree, inspect.getsourcefile(original), "exec"), tasks.__dict__, namespace)
    patched = namespace[original.__name__]
    patched.__nas_plugin_original__ = original
    return patched


DETECT_SETS = 2  # parse_model names Detect in two set literals: the heads' arguments, and which heads take `legacy`


def install():
    """Make the plugin's YAML modules buildable, trainable and loadable by stock Ultralytics (idempotent)."""
    import torch

    tasks = importlib.import_module(
        "ultralytics.nn.tasks"
    )  # may run inside ultralytics.nn's own import (start-up hook)
    if is_installed():
        return
    from . import elastic_ops, modules  # import nothing from Ultralytics at module level: safe mid-import

    heads = [elastic_detect_class()]
    for cls in (*modules.YAML_MODULES, *heads):
        setattr(tasks, cls.__name__, cls)
    sets = {"base_modules": modules.YAML_MODULES, "repeat_modules": modules.REPEAT_MODULES}
    tasks.parse_model = _extended_parse_model(
        tasks, {k: [c.__name__ for c in v] for k, v in sets.items()}, [c.__name__ for c in heads]
    )
    package = sys.modules.get("ultralytics.nn")
    if hasattr(package, "parse_model"):  # the package re-exports it; when it is still importing, it will copy ours
        package.parse_model = tasks.parse_model
    torch.serialization.add_safe_globals(plugin_classes(modules, elastic_ops, sys.modules[__name__]))
    _register_callbacks()


def is_installed():
    """Whether `install()` has patched the running Ultralytics."""
    tasks = importlib.import_module("ultralytics.nn.tasks")
    return getattr(tasks.parse_model, "__nas_plugin_original__", None) is not None


def _register_callbacks():
    """Append the supernet-training callbacks to Ultralytics' defaults, which every Model and trainer copies."""
    from ultralytics.utils.callbacks.base import default_callbacks

    from .training import CALLBACKS

    for event, fn in CALLBACKS.items():
        if fn not in default_callbacks[event]:
            default_callbacks[event].append(fn)


def plugin_classes(*mods):
    """Every nn.Module class the plugin defines (what a pickled model may reference)."""
    import torch

    return [
        obj
        for mod in mods
        for obj in vars(mod).values()
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == mod.__name__
    ]


# --- building blocks and model I/O -------------------------------------------------------------------------------


def conv(c1, c2, k=1, s=1, g=1, act=True):
    """Ultralytics' `Conv` (Conv2d, BatchNorm2d, activation): static blocks are made of it, so their state-dict keys,
    fusing and export are those of stock layers."""
    from ultralytics.nn.modules import Conv

    return Conv(c1, c2, k, s, g=g, act=act)


def sppf(c1, c2, k=5):
    """Ultralytics' `SPPF` as a YOLOv8 YAML row `[c2, k]` builds it (its cv1 activated, as `parse_model` does)."""
    from ultralytics.nn.modules import SPPF, Conv

    m = SPPF(c1, c2, k)
    m.cv1.act = Conv.default_act
    return m


def layer_op(m):
    """How a layer maps input channels to output channels in `nas_plugin.channels` graphs: 'concat', 'same' (channels
    pass through) or 'fixed'."""
    from torch import nn
    from ultralytics.nn.modules import Concat

    return "concat" if isinstance(m, Concat) else "same" if isinstance(m, (nn.Upsample, nn.Identity)) else "fixed"


def detect_hidden_widths(ch0, nc, reg_max):
    """(box, class) branch widths Ultralytics' `Detect` derives from its first input's channels."""
    return max((16, ch0 // 4, reg_max * 4)), max(ch0, min(nc, 100))


def elastic_detect_class():
    """`ElasticDetect`: Ultralytics' dense (legacy, YOLOv8-style) `Detect` whose hidden widths follow the live width
    of its first input, as a Detect built for the narrower inputs would; it extracts to a stock `Detect`.

    Made on first use because it subclasses an Ultralytics class (this module imports none at load); pickles find
    it as `nas_plugin.integration.ElasticDetect` through the module's `__getattr__`.
    """
    if "ElasticDetect" in globals():
        return globals()["ElasticDetect"]
    from functools import partial

    from ultralytics.nn.modules import Detect

    from .elastic_ops import narrow_branch
    from .errors import NASError

    class ElasticDetect(Detect):
        static_type = "Detect"
        live = None  # (box, class) hidden widths of the active subnet; None: the full ones

        def __init__(self, nc=80, reg_max=16, end2end=False, ch=()):
            super().__init__(nc, reg_max, end2end, ch)
            if not self.legacy:
                raise NASError(
                    "ElasticDetect needs the dense head of YOLOv8-style YAMLs (C2f blocks); this YAML builds the "
                    "depthwise YOLO11/26 head, whose zero-padded channels would not stay zero. Use Detect."
                )

        def _heads(self):
            return [h for h in ("cv2", "cv3", "one2one_cv2", "one2one_cv3") if getattr(self, h, None) is not None]

        def input_weights(self):
            return [[f"{h}.{i}.0.conv.weight" for h in self._heads()] for i in range(self.nl)]

        def hidden_groups(self):
            """Each branch's two hidden convs (their widths follow the first input's live width)."""
            from .modules import conv_output_slices, hidden_group

            return [
                hidden_group(
                    ("width",), getattr(self, h)[i][j].conv.out_channels, conv_output_slices(f"{h}.{i}.{j}."), reads
                )
                for h in self._heads()
                for i in range(self.nl)
                for j, reads in ((0, [(f"{h}.{i}.1.conv.weight", 1, 0)]), (1, [(f"{h}.{i}.2.weight", 1, 0)]))
            ]

        def set_input_live(self, live):
            widths = detect_hidden_widths(len(live[0]), self.nc, self.reg_max)
            full = (self.cv2[0][0].conv.out_channels, self.cv3[0][0].conv.out_channels)
            self.live = None if widths == full else widths

        def static_at(self, ch):
            """A plain Detect for inputs of `ch` channels (what a subnet's head is), strides set."""
            head = ElasticDetect(self.nc, self.reg_max, getattr(self, "one2one_cv2", None) is not None, ch)
            head.stride = self.stride
            return head

        def forward_head(self, x, box_head=None, cls_head=None):
            if self.live is None or box_head is None or cls_head is None:
                return super().forward_head(x, box_head, cls_head)
            c2, c3 = self.live
            return super().forward_head(
                x, [partial(narrow_branch, b, c2) for b in box_head], [partial(narrow_branch, b, c3) for b in cls_head]
            )

    ElasticDetect.__module__, ElasticDetect.__qualname__ = __name__, "ElasticDetect"
    globals()["ElasticDetect"] = ElasticDetect
    return ElasticDetect


def __getattr__(name):
    if name == "ElasticDetect":  # unpickling a supernet before install() made the class
        return elastic_detect_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_divisible(x, divisor):
    """Channel rounding as Ultralytics' parser does it (up to a multiple of `divisor`)."""
    from ultralytics.utils.ops import make_divisible as _make_divisible

    return _make_divisible(x, divisor)


def read_model_yaml(path):
    """A model YAML as Ultralytics reads it (a scale letter in the file name selects the scale, as for stock models)."""
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load(path)


def yolo_model(source):
    """The DetectionModel `YOLO(source)` builds (a YAML) or loads (a checkpoint), with plugin modules buildable."""
    from ultralytics import YOLO

    install()
    return YOLO(str(source), task="detect").model


def detection_model(cfg):
    """A DetectionModel built from a model config dict (what `parse_model` reads), in eval mode."""
    from ultralytics.nn.tasks import DetectionModel

    install()
    return DetectionModel(cfg, ch=cfg.get("channels", 3), verbose=False).eval()


def load_checkpoint(path):
    """An Ultralytics checkpoint dict, loaded as `ULTRALYTICS_SAFE_LOAD=1` loads it (`weights_only`, known classes and
    the plugin's only), so reading a run's state never executes code from the file."""
    from ultralytics.nn.tasks import torch_safe_load

    install()
    return torch_safe_load(path, safe_only=True)[0]


def save_checkpoint(model, path, train_args=None, **extra):
    """Write `model` (float32, so inherited weights stay bit-exact) as an Ultralytics checkpoint that `YOLO(path)`,
    `yolo val/predict/export` load; `train_args` become their defaults, `extra` are further top-level keys."""
    import torch
    import ultralytics

    args = model.args if isinstance(model.args, dict) else vars(model.args)
    ckpt = {
        "date": datetime.now().astimezone().isoformat(),
        "version": ultralytics.__version__,
        "model": model,
        "train_args": {k: args[k] for k in CHECKPOINT_ARGS if k in args} | {"task": "detect"} | (train_args or {}),
        **extra,
    }
    torch.save(ckpt, path)


def gflops(model, imgsz):
    """GFLOPs of `model` at `imgsz` as Ultralytics reports them."""
    from ultralytics.utils.torch_utils import get_flops

    return get_flops(model, imgsz)


def export_ready(model):
    """Put a model's heads in the state Ultralytics' ONNX exporter uses (decoded boxes, static shapes); returns it."""
    from ultralytics.nn.modules import Detect

    for m in model.modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", False
    return model


def torch_to_onnx(module, inputs, path, opset, input_names):
    """Export `module` at the shapes of `inputs` to ONNX the way Ultralytics' exporter does."""
    from ultralytics.utils.export.engine import torch2onnx

    torch2onnx(module, inputs, path, opset=opset, input_names=input_names, output_names=None)


# --- data and validation -----------------------------------------------------------------------------------------


def check_dataset(data_yaml):
    """The data dict Ultralytics builds from a dataset YAML (absolute split paths, names, nc)."""
    from ultralytics.data.utils import check_det_dataset

    return check_det_dataset(str(data_yaml))


def is_image(path):
    """Whether Ultralytics reads `path` as an image (by its suffix)."""
    from ultralytics.data.utils import IMG_FORMATS

    return path.suffix[1:].lower() in IMG_FORMATS


def label_path(image):
    """The label file Ultralytics reads for `image` (its last `images` folder swapped for `labels`, suffix .txt)."""
    from ultralytics.data.utils import img2label_paths

    return Path(img2label_paths([str(image)])[0])


def cache_labels(data_yaml, split="val"):
    """Build Ultralytics' label cache of a split now, in one process, so validators in parallel only read it."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset

    data = check_dataset(data_yaml)
    build_yolo_dataset(get_cfg(), data[split], 1, data, mode="val")


class LetterboxedImages:
    """A split of a checked data dict as the validator sees it: letterboxed to `imgsz`, no augmentation."""

    def __init__(self, data, split, imgsz, batch):
        from ultralytics.cfg import get_cfg
        from ultralytics.data.build import build_yolo_dataset

        cfg = get_cfg(overrides={"imgsz": imgsz, "mode": "val", "task": "detect"})
        self.dataset = build_yolo_dataset(cfg, data[split], batch, data, mode="val", rect=False)

    def __len__(self):
        return len(self.dataset)

    def batch(self, indices):
        """Images `indices` as one float batch (b, 3, imgsz, imgsz) in 0-1."""
        return self.dataset.collate_fn([self.dataset[i] for i in indices])["img"].float() / 255


def validate(model, data, imgsz, batch, device, save_dir, split="val"):
    """(mAP50, mAP50-95) of a static model on a split of `data` by the stock validator, without plots or files."""
    from ultralytics.models.yolo.detect import DetectionValidator

    args = dict(data=str(data), split=split, imgsz=imgsz, batch=batch, device=device)
    args.update(plots=False, verbose=False, save_json=False)
    stats = DetectionValidator(save_dir=save_dir, args=args)(model=model)
    return float(stats["metrics/mAP50(B)"]), float(stats["metrics/mAP50-95(B)"])


# --- the trainer -------------------------------------------------------------------------------------------------


def is_main_process():
    """False on the non-zero ranks of a DDP run (which neither validate nor write logs)."""
    from ultralytics.utils import RANK

    return RANK in {-1, 0}


class TrainerView:
    """The facts of an Ultralytics `DetectionTrainer` the supernet callbacks use, by name."""

    def __init__(self, trainer):
        self.trainer = trainer

    @property
    def state(self):
        """What the plugin keeps on the trainer between callbacks (None: not a supernet run)."""
        return getattr(self.trainer, "nas", None)

    @state.setter
    def state(self, value):
        self.trainer.nas = value

    @property
    def model(self):
        from ultralytics.utils.torch_utils import unwrap_model

        return unwrap_model(self.trainer.model)

    ema = property(lambda self: self.trainer.ema.ema, doc="The EMA model, which is validated and saved.")
    optimizer = property(lambda self: self.trainer.optimizer)
    model_source = property(lambda self: str(self.trainer.args.model), doc="The `model=` argument.")
    seed = property(lambda self: int(self.trainer.args.seed))
    compile = property(lambda self: self.trainer.args.compile, doc="The `compile=` argument (False: eager).")
    imgsz = property(lambda self: self.trainer.args.imgsz)
    data = property(lambda self: self.trainer.data, doc="The checked data dict.")
    save_dir = property(lambda self: self.trainer.save_dir)
    batch_size = property(lambda self: self.trainer.batch_size)
    epoch = property(lambda self: self.trainer.epoch, doc="The epoch being trained, 0-based.")
    epochs = property(lambda self: self.trainer.epochs)
    start_epoch = property(lambda self: self.trainer.start_epoch, doc="0 unless the run resumed.")
    accumulate = property(lambda self: self.trainer.accumulate, doc="Batches per optimizer update.")
    batches_per_epoch = property(lambda self: len(self.trainer.train_loader))

    @property
    def weights_given(self):
        """Whether training started from weights (a .pt model or `pretrained=path`) rather than a YAML's random init."""
        args = self.trainer.args
        return str(args.model).endswith(".pt") or isinstance(args.pretrained, (str, Path))

    @property
    def validates_now(self):
        """Whether the trainer validates after this epoch (`val=True`, or the final epoch)."""
        return bool(self.trainer.args.val) or self.epoch + 1 >= self.epochs

    @property
    def last_metrics(self):
        """(mAP50, mAP50-95) of the trainer's last validation."""
        m = self.trainer.metrics
        return m.get("metrics/mAP50(B)"), m.get("metrics/mAP50-95(B)")

    def validate_quietly(self):
        """Run the trainer's validator on its EMA model now, without plots; returns (mAP50, mAP50-95)."""
        validator = self.trainer.validator
        plots, validator.args.plots = validator.args.plots, False
        try:
            m = validator(self.trainer)
        finally:
            validator.args.plots = plots
        return m.get("metrics/mAP50(B)", float("nan")), m.get("metrics/mAP50-95(B)", float("nan"))


def wrap_criterion(model, wrapper):
    """Make `wrapper(stock criterion)` the loss `model` trains with; the wrapper is called as the criterion is."""
    model.criterion = wrapper(getattr(model, "criterion", None) or model.init_criterion())


def head_outputs(preds):
    """(box distributions (b, 4 * reg_max, anchors), class logits (b, nc, anchors)) of a Detect training output."""
    return preds["boxes"], preds["scores"]


def detach_outputs(preds):
    """A Detect training output with its tensors detached (a distillation target)."""
    import torch

    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in preds.items()}


def loss_parts(items):
    """(box, cls, dfl) floats from the loss items the stock detection criterion returns."""
    return tuple(float(v) for v in list(items.values())[:3])


__all__ = (
    "CHECKPOINT_ARGS",
    "IntegrationError",
    "LetterboxedImages",
    "TESTED_ULTRALYTICS",
    "TrainerView",
    "check_dataset",
    "conv",
    "detach_outputs",
    "detect_hidden_widths",
    "detection_model",
    "elastic_detect_class",
    "export_ready",
    "gflops",
    "head_outputs",
    "install",
    "is_image",
    "is_installed",
    "is_main_process",
    "layer_op",
    "load_checkpoint",
    "loss_parts",
    "make_divisible",
    "plugin_classes",
    "read_model_yaml",
    "save_checkpoint",
    "sppf",
    "torch_to_onnx",
    "validate",
    "wrap_criterion",
    "yolo_model",
)
