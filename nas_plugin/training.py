"""Supernet training inside the stock Ultralytics trainer, driven by callbacks (registered by `integration.install`).

One subnet is trained per batch; the trainer's gradient accumulation (`nbs / batch` batches per optimizer update)
puts several subnets into each update at the memory cost of one. The `sandwich` sampler cycles max, min and
`num_random` random subnets, so when `nbs / batch == 2 + num_random` (the default batch 16, nbs 64, num_random 2)
every update holds exactly one sandwich. Which subnet a batch trains depends only on (seed, epoch, batch index):
DDP ranks agree and a resumed run continues the same sequence.

Before each validation the EMA model's BatchNorm statistics are recalibrated on training images for the smallest
subnet (validated and logged) and then for the largest, which the stock validator scores, so `best.pt` is chosen by
the largest subnet's real accuracy. Per-subnet losses and every sampled subnet go to `nas_epochs.csv` and
`nas_subnets.csv` beside `results.csv`.
"""

import csv
import numbers
import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .calibration import calibration_batches, recalibrate_bn
from .errors import NASError
from .files import atomic_path
from .space import encode, max_arch, min_arch, random_arch

# Attribute access at call time: modules.py registers these callbacks while supernet.py may still be importing it.
from . import supernet  # noqa: E402  isort: skip

SAMPLERS = ("sandwich", "uniform")
DEFAULTS = {"sampler": "sandwich", "num_random": 2, "distill": 0.0, "calib_batches": 8, "val_min": True}
EPOCH_COLUMNS = ("epoch", "subnet", "batches", "box_loss", "cls_loss", "dfl_loss", "kd_loss", "mAP50", "mAP50-95")


def parse_nas_config(block, source="the model YAML"):
    """Validate a YAML `nas:` block and fill in defaults; errors name the key, the value and what is allowed."""
    block = dict(block or {})
    unknown = sorted(set(block) - set(DEFAULTS))
    if unknown:
        raise NASError(f"unknown nas: option(s) {unknown} in {source}; allowed options are {sorted(DEFAULTS)}.")
    cfg = {**DEFAULTS, **block}

    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    checks = {
        "sampler": (lambda v: v in SAMPLERS, f"one of {list(SAMPLERS)}"),
        "num_random": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "distill": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0, "a number >= 0"),
        "calib_batches": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 turns BN recalibration off)"),
        "val_min": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, (ok, allowed) in checks.items():
        if not ok(cfg[key]):
            raise NASError(f"nas: {key}={cfg[key]!r} in {source} is not allowed; {key} must be {allowed}.")
    return cfg


def cycle(cfg):
    """The subnet kinds one sampler cycle trains, one per batch."""
    return ["max", "min"] + ["random"] * cfg["num_random"] if cfg["sampler"] == "sandwich" else ["random"]


def sample(space, cfg, seed, epoch, batch_index, batches_per_epoch):
    """(kind, arch) trained at this step: a pure function of its arguments."""
    kinds = cycle(cfg)
    kind = kinds[(epoch * batches_per_epoch + batch_index) % len(kinds)]
    if kind == "max":
        return kind, max_arch(space)
    if kind == "min":
        return kind, min_arch(space)
    return kind, random_arch(space, rng=random.Random(f"nas_plugin:{seed}:{epoch}:{batch_index}"))


def distillation_loss(student, teacher):
    """In-place distillation of the largest subnet's class scores and box distributions into a smaller subnet.

    Both are Detect training outputs ({'boxes': (b, 4*reg_max, A), 'scores': (b, nc, A)}); anchors are weighted by
    the teacher's confidence so background does not dominate. Returns a scalar per image (like the stock loss).
    """
    t_prob = teacher["scores"].sigmoid()
    weight = t_prob.amax(1)  # (b, A)
    norm = weight.sum().clamp(min=1.0)
    cls = (F.binary_cross_entropy_with_logits(student["scores"], t_prob, reduction="none").sum(1) * weight).sum() / norm
    b, _, a = student["boxes"].shape
    s_box = student["boxes"].view(b, 4, -1, a).log_softmax(2)
    t_box = teacher["boxes"].view(b, 4, -1, a).log_softmax(2)
    box = (F.kl_div(s_box, t_box, reduction="none", log_target=True).sum((1, 2)) * weight).sum() / norm
    return cls + box


class DistillingCriterion:
    """Wraps the stock detection loss: on student batches adds `weight` x distillation from the largest subnet.

    The teacher is the same model with the largest arch active, run on the same images without gradients. The term
    goes into the summed loss only (as an extra element), so the trainer's loss names and logs stay stock.
    """

    def __init__(self, criterion, model, state, weight):
        self.criterion, self.model, self.state, self.weight = criterion, model, state, weight

    def __call__(self, preds, batch):
        loss, items = self.criterion(preds, batch)
        if self.state.kind == "max":
            self.state.kd = 0.0
            return loss, items
        with torch.no_grad():
            supernet.set_arch(self.model, self.state.max_arch)
            teacher = self.model(batch["img"])
            supernet.set_arch(self.model, self.state.arch)
        kd = distillation_loss(preds, teacher)
        self.state.kd = float(kd.detach())
        return torch.cat([loss, (self.weight * kd * preds["boxes"].shape[0]).reshape(1)]), items

    def update(self):
        if hasattr(self.criterion, "update"):
            self.criterion.update()


@dataclass
class NASState:
    """What the callbacks keep on the trainer (`trainer.nas`) between events."""

    cfg: dict
    space: dict
    seed: int
    max_arch: dict
    batch_index: int = 0
    kind: str = "max"
    arch: dict = None
    kd: float = 0.0
    losses: dict = field(default_factory=dict)  # kind -> [batches, box, cls, dfl, kd] sums for this epoch
    subnets: list = field(default_factory=list)  # [epoch, batch, kind, encoded arch] rows for this epoch
    val_min: dict = None
    calib: list = None


def _model(trainer):
    from ultralytics.utils.torch_utils import unwrap_model

    return unwrap_model(trainer.model)


def on_pretrain_routine_end(trainer):
    """Set up sampling for a supernet (and refuse a `nas:` block on a model without elastic layers)."""
    model = _model(trainer)
    block = model.yaml.get("nas")
    if not supernet.elastic_layers(model):
        if block is not None:
            raise NASError(f"{model.yaml.get('yaml_file', 'the model YAML')} has a nas: block but no elastic layers; remove the block or use a supernet YAML.")
        return
    cfg = parse_nas_config(block, model.yaml.get("yaml_file", "the model YAML"))
    space = supernet.space_from_model(model)
    trainer.nas = NASState(cfg, space, int(trainer.args.seed), max_arch(space))
    if cfg["distill"] > 0:
        model.criterion = DistillingCriterion(model.init_criterion(), model, trainer.nas, cfg["distill"])
    from ultralytics.utils import LOGGER

    kinds = cycle(cfg)
    LOGGER.info(f"nas: {cfg['sampler']} sampler, one subnet per batch cycling {kinds}, distill={cfg['distill']}, BN recalibration on {cfg['calib_batches']} train batches")
    if cfg["sampler"] == "sandwich" and trainer.accumulate != len(kinds):
        LOGGER.warning(f"nas: optimizer updates accumulate {trainer.accumulate} batches but a sandwich is {len(kinds)}; set nbs={trainer.batch_size * len(kinds)} so every update trains {kinds}.")
    for name, key in (("nas_epochs.csv", "epoch"), ("nas_subnets.csv", "epoch")):  # a resumed run redoes its epoch
        _truncate_csv(trainer.save_dir / name, key, trainer.start_epoch + 1)


def on_train_epoch_start(trainer):
    if hasattr(trainer, "nas"):
        trainer.nas.batch_index = 0
        trainer.nas.losses, trainer.nas.subnets = {}, []


def on_train_batch_start(trainer):
    state = getattr(trainer, "nas", None)
    if state is None:
        return
    state.kind, state.arch = sample(state.space, state.cfg, state.seed, trainer.epoch, state.batch_index, len(trainer.train_loader))
    supernet.set_arch(_model(trainer), state.arch)
    state.kd = 0.0


def on_train_batch_end(trainer):
    state = getattr(trainer, "nas", None)
    if state is None:
        return
    items = [float(v) for v in trainer.loss_items.values()][:3]
    sums = state.losses.setdefault(state.kind, [0, 0.0, 0.0, 0.0, 0.0])
    for j, v in enumerate([1, *items, state.kd]):
        sums[j] += v
    state.subnets.append([trainer.epoch + 1, state.batch_index, state.kind, "".join(map(str, encode(state.space, state.arch)))])
    state.batch_index += 1


def on_train_epoch_end(trainer):
    """Before the stock validation: recalibrate BN for min (validate and log it), then for max (scored by stock)."""
    from ultralytics.utils import LOGGER, RANK

    state = getattr(trainer, "nas", None)
    if state is None or RANK not in {-1, 0}:
        return
    parts = [f"{k} {sum(sums[1:4]) / sums[0]:.3f}" for k, sums in state.losses.items()]
    LOGGER.info(f"nas: epoch {trainer.epoch + 1} mean loss per subnet kind (box+cls+dfl): {', '.join(parts)}")
    final_epoch = trainer.epoch + 1 >= trainer.epochs
    if not (trainer.args.val or final_epoch):
        return
    ema = trainer.ema.ema
    state.val_min = None
    if state.cfg["val_min"]:
        supernet.set_arch(ema, min_arch(state.space))
        _recalibrate(trainer, ema)
        plots, trainer.validator.args.plots = trainer.validator.args.plots, False
        try:
            metrics = trainer.validator(trainer)
        finally:
            trainer.validator.args.plots = plots
        state.val_min = (metrics.get("metrics/mAP50(B)", float("nan")), metrics.get("metrics/mAP50-95(B)", float("nan")))
        LOGGER.info(f"nas: smallest subnet after BN recalibration: mAP50 {state.val_min[0]:.4f}, mAP50-95 {state.val_min[1]:.4f}")
    supernet.set_arch(ema, state.max_arch)
    _recalibrate(trainer, ema)


def _recalibrate(trainer, ema):
    state = trainer.nas
    if state.cfg["calib_batches"] == 0:
        return
    if state.calib is None:
        state.calib = calibration_batches(trainer.data, trainer.args.imgsz, trainer.batch_size, state.cfg["calib_batches"], state.seed)
    recalibrate_bn(ema, state.calib)


def on_fit_epoch_end(trainer):
    """Append this epoch's per-kind losses (and min/max mAP) and its sampled subnets to the side CSVs."""
    from ultralytics.utils import RANK

    state = getattr(trainer, "nas", None)
    if state is None or RANK not in {-1, 0} or not state.losses:  # also called again after the final validation
        return
    val = {"min": state.val_min, "max": (trainer.metrics.get("metrics/mAP50(B)"), trainer.metrics.get("metrics/mAP50-95(B)"))}
    rows = []
    for kind, sums in state.losses.items():
        means = [round(v / sums[0], 5) for v in sums[1:]]
        rows.append([trainer.epoch + 1, kind, sums[0], *means, *(val.get(kind) or ("", ""))])
    _append_csv(trainer.save_dir / "nas_epochs.csv", EPOCH_COLUMNS, rows)
    _append_csv(trainer.save_dir / "nas_subnets.csv", ("epoch", "batch", "subnet", "arch_code"), state.subnets)
    state.losses, state.subnets = {}, []


def _append_csv(path, columns, rows):
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(columns)
        writer.writerows(rows)


def _truncate_csv(path, key, first_redone):
    """Drop rows whose `key` column is >= `first_redone` (they belong to an epoch a resumed run trains again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[rows[0].index(key)]) < first_redone]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)


CALLBACKS = {
    "on_pretrain_routine_end": on_pretrain_routine_end,
    "on_train_epoch_start": on_train_epoch_start,
    "on_train_batch_start": on_train_batch_start,
    "on_train_batch_end": on_train_batch_end,
    "on_train_epoch_end": on_train_epoch_end,
    "on_fit_epoch_end": on_fit_epoch_end,
}
