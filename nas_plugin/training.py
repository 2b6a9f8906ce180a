"""Supernet training inside the stock Ultralytics trainer, driven by callbacks (registered by `integration.install`).

The recipe is the `nas:` block of the supernet YAML (`parse_nas_config`):

- **Sampling.** The `sandwich` sampler cycles max, min and `num_random` random subnets; `uniform` draws one random
  subnet. With a latency `band: [low, high]` (ms, in the units of the latency table `lut:`), every subnet but the
  largest is drawn inside the band instead (`band_arch`), so training goes to the subnets a search under `high`
  will choose among, not to the whole space. By default one subnet trains per batch and the trainer's gradient
  accumulation (`nbs / batch` batches per update) mixes several into each update at the memory of one. With
  `same_batch: true` the whole cycle runs on every batch and its losses go into one backward pass
  (BigNAS/AttentiveNAS): the students see the images the largest subnet saw, and in-place distillation uses its
  detached outputs at no extra forward, at the memory of the whole cycle.
- **Phases** (once-for-all's progressive shrinking): a list of `[name, epoch fraction]`; `max` trains only the
  largest subnet (the full-network warm-up), each later name makes more choices elastic: a field (`kernel`, `depth`,
  `expand`, `act`, `width`, in every section that has it), `neck` (every neck choice) or `all`. Fields opened one
  by one before `all` open width last, as once-for-all does.
- **Anchor**: `anchor:` a named arch of the supernet (`archs:`, e.g. `yolov8n`) or an arch .json takes the largest
  subnet's place: the warm-up trains it alone, it is the sandwich's first subnet, choices not yet opened stay at its
  values, and it is the subnet validated for `best.pt`. Training then goes to the stock model (or a subnet near the
  latency budget) and its neighbours rather than to the largest subnet, which runs far above a nano budget.
- **Start**: `init:` a checkpoint of the largest subnet (e.g. `yolo train` of its extracted YAML) or of the same
  supernet; `zero_init:` zeroes the last BatchNorm gamma of every residual block (MBConv, C2f bottleneck), so each
  starts as identity.

Which subnets a batch trains depends only on (seed, epoch, epochs, batch index): DDP ranks agree and a resumed run
continues the same sequence. Before each validation the EMA model's BatchNorm statistics are recalibrated on
training images for the smallest subnet (validated and logged) and then for the largest (or the anchor), which the
stock validator scores, so `best.pt` is chosen by its real accuracy. Per-subnet losses and every trained subnet go
to `nas_epochs.csv` and `nas_subnets.csv` beside `results.csv`.
"""

import csv
import math
import numbers
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import channel_order, supernet
from .calibration import calibration_batches, recalibrate_bn
from .errors import NASError
from .files import atomic_path
from .integration import (
    TrainerView,
    detach_outputs,
    head_outputs,
    is_main_process,
    loss_parts,
    read_model_yaml,
    wrap_criterion,
)
from .space import arch_key, encode, fields, load_arch, max_arch, min_arch, random_arch, restrict, units

SAMPLERS = ("sandwich", "uniform")
DEFAULTS = {
    "sampler": "sandwich",
    "num_random": 2,
    "same_batch": False,
    "distill": 0.0,  # off: it cost accuracy in the ablation (README, Benchmarks), with two seeds
    "phases": [["max", 0.4], ["all", 0.6]],
    "init": None,
    "zero_init": True,
    "calib_batches": 8,
    "val_min": True,
    "lut": None,
    "band": None,
    "anchor": None,
}
BAND_TRIES = 64  # random draws per band subnet; the draw nearest the band is taken when none lands inside
PHASE_WORDS = ("max", "neck", "all")  # besides the space's field names (kernel, depth, expand, ...)
EPOCH_COLUMNS = ("epoch", "subnet", "batches", "box_loss", "cls_loss", "dfl_loss", "kd_loss", "mAP50", "mAP50-95")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _phases_ok(v):
    if not isinstance(v, (list, tuple)) or not v:
        return False
    if not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and _is_number(p[1]) and p[1] > 0
        for p in v
    ):
        return False
    names = [p[0] for p in v]
    return (
        len(set(names)) == len(names)
        and names[-1] == "all"
        and "max" not in names[1:]
        and abs(sum(p[1] for p in v) - 1) < 1e-6
    )


def parse_nas_config(block, source="the model YAML", space=None):
    """Validate a YAML `nas:` block and fill in defaults; errors name the key, the value and what is allowed.

    With `space`, phase names are also checked against the supernet's fields.
    """
    if block is not None and not isinstance(block, dict):
        raise NASError(
            f"nas: in {source} must be a mapping of options, got {block!r}; allowed options are {sorted(DEFAULTS)}."
        )
    block = dict(block or {})
    unknown = sorted(set(block) - set(DEFAULTS))
    if unknown:
        raise NASError(f"unknown nas: option(s) {unknown} in {source}; allowed options are {sorted(DEFAULTS)}.")
    cfg = {**DEFAULTS, **block}
    checks = {
        "sampler": (lambda v: v in SAMPLERS, f"one of {list(SAMPLERS)}"),
        "num_random": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
        "same_batch": (lambda v: isinstance(v, bool), "true or false"),
        "distill": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0"),
        "phases": (
            _phases_ok,
            "a list of [name, epoch fraction] pairs: fractions > 0 that sum to 1, names used once, 'max' only "
            "first, 'all' last, e.g. [[max, 0.3], [kernel, 0.2], [all, 0.5]]",
        ),
        "init": (
            lambda v: v is None or (isinstance(v, str) and v.endswith(".pt")),
            "a path to a .pt checkpoint or null",
        ),
        "zero_init": (lambda v: isinstance(v, bool), "true or false"),
        "calib_batches": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 turns BN recalibration off)"),
        "val_min": (lambda v: isinstance(v, bool), "true or false"),
        "lut": (
            lambda v: v is None or (isinstance(v, str) and v.endswith(".json")),
            "a path to a latency table .json (tools/build_lut.py) or null",
        ),
        "anchor": (
            lambda v: v is None or (isinstance(v, str) and v != "random"),
            "null (the largest subnet), 'min', a named arch of the supernet's archs: (e.g. yolov8n) or a path to an "
            "arch .json",
        ),
        "band": (
            lambda v: (
                v is None
                or (isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_is_number, v)) and 0 <= v[0] < v[1])
            ),
            "null or [low, high] in ms with 0 <= low < high, e.g. [1.4, 1.8]",
        ),
    }
    for key, (ok, allowed) in checks.items():
        if not ok(cfg[key]):
            raise NASError(f"nas: {key}={cfg[key]!r} in {source} is not allowed; {key} must be {allowed}.")
    if (cfg["band"] is None) != (cfg["lut"] is None):
        given, other = ("band", "lut") if cfg["lut"] is None else ("lut", "band")
        raise NASError(
            f"nas: {given}={cfg[given]!r} in {source} needs {other}: a latency band is read off a latency table; "
            "give both (band in the table's ms) or neither."
        )
    cfg["phases"] = [[name, float(f)] for name, f in cfg["phases"]]
    if space is not None:
        allowed = [*PHASE_WORDS, *dict.fromkeys(f for _, f in fields(space))]
        bad = [name for name, _ in cfg["phases"] if name not in allowed]
        if bad:
            raise NASError(f"nas: phases name {bad[0]!r} in {source} is not allowed; phase names are {allowed}.")
    return cfg


def top_kind(cfg):
    """What logs call the sandwich's first subnet: 'anchor' where the recipe names one, else 'max'."""
    return "max" if cfg["anchor"] is None else "anchor"


def cycle(cfg):
    """The subnet kinds one sampler cycle trains (one per batch, or all on each batch with `same_batch`)."""
    top = top_kind(cfg)
    kinds = [top, "min"] + ["random"] * cfg["num_random"] if cfg["sampler"] == "sandwich" else ["random"]
    return [k if k == top or cfg["band"] is None else "band" for k in kinds]


def band_arch(space, band, latency, rng):
    """A random subnet of `space` whose `latency(arch)` (ms) lies in `band`, or of `BAND_TRIES` draws the nearest.

    A space (a phase's) whose smallest subnet is slower than the band cannot reach it: a plain random draw there, so
    the phases before the band is reachable shrink as they would without it.
    """
    low, high = band
    if latency(min_arch(space)) > high:
        return random_arch(space, rng=rng)
    best, miss = None, math.inf
    for _ in range(BAND_TRIES):
        arch = random_arch(space, rng=rng)
        ms = latency(arch)
        d = max(low - ms, ms - high, 0.0)
        if d < miss:
            best, miss = arch, d
        if d == 0:
            break
    return best


def phase_ends(cfg, epochs):
    """The epoch (0-based, exclusive) at which each phase ends."""
    ends, total = [], 0.0
    for _, fraction in cfg["phases"]:
        total += fraction
        ends.append(round(total * epochs))
    ends[-1] = epochs
    return ends


def phase_at(cfg, epoch, epochs):
    """Index of the phase that trains `epoch` (0-based)."""
    return next((i for i, end in enumerate(phase_ends(cfg, epochs)) if epoch < end), len(cfg["phases"]) - 1)


def phase_space(space, cfg, phase, anchor=None):
    """The sub-space phase `phase` samples from: the choices its own and earlier phases made elastic; the others
    fixed to the largest subnet's, or to `anchor`'s (the recipe's resolved `anchor:` arch)."""
    names = {name for name, _ in cfg["phases"][: phase + 1]}
    elastic = {
        (section, f)
        for section, f in fields(space)
        if "all" in names or f in names or (section == "head" and "neck" in names)
    }
    return restrict(space, elastic, anchor)


CHANNEL_FIELDS = ("width", "expand")  # choices that keep leading channels: sorted by importance before they open


def opened_fields(space, cfg, epoch, epochs, anchor=None):
    """The channel fields (`CHANNEL_FIELDS`) that `epoch` samples narrower while the epoch before did not (phases
    rounded to no epochs open with the next)."""

    def narrowed(phase):
        return {
            f
            for _, _, u in units(phase_space(space, cfg, phase, anchor))
            for f in CHANNEL_FIELDS
            if len({**u["per_unit"], **u["per_block"]}.get(f, ())) > 1
        }

    return narrowed(phase_at(cfg, epoch, epochs)) - narrowed(phase_at(cfg, epoch - 1, epochs)) if epoch else set()


def sample(space, cfg, seed, epoch, batch_index, batches_per_epoch, epochs=1, latency=None, anchor=None):
    """[(kind, arch)] trained on this batch, largest (or `anchor`) first: a pure function of its arguments.

    One subnet per batch (cycling the sampler's kinds over batches), or the whole cycle with `same_batch`. Within a
    phase that fixes some choices, subnets equal to the phase's largest are trained once and called 'max'. `latency`
    (arch -> ms, the `lut:` table's prediction) places the 'band' kind. `anchor` (the recipe's resolved `anchor:`
    arch) takes the largest's place as the sandwich's first subnet and as what unopened choices are fixed to, so the
    warm-up phase trains it alone; it is called 'anchor'.
    """
    sub = phase_space(space, cfg, phase_at(cfg, epoch, epochs), anchor)
    kinds = cycle(cfg)
    if cfg["same_batch"]:
        picks = list(enumerate(kinds))
    else:
        j = (epoch * batches_per_epoch + batch_index) % len(kinds)
        picks = [(j, kinds[j])]
    top = top_kind(cfg)
    largest = anchor or max_arch(sub)
    out = {}
    for j, kind in picks:
        if kind == top:
            arch = largest
        elif kind == "min":
            arch = min_arch(sub)
        else:
            rng = random.Random(f"nas_plugin:{seed}:{epoch}:{batch_index}:{j}")
            arch = random_arch(sub, rng=rng) if kind == "random" else band_arch(sub, cfg["band"], latency, rng)
        out.setdefault(arch_key(arch), (top if arch == largest else kind, arch))
    return list(out.values())


def distillation_loss(student, teacher):
    """In-place distillation of the largest subnet's class scores and box distributions into a smaller subnet.

    Both are Detect training outputs (`integration.head_outputs`); anchors are weighted by the teacher's confidence
    so background does not dominate. Returns a scalar per image (like the stock loss).
    """
    (s_boxes, s_scores), (t_boxes, t_scores) = head_outputs(student), head_outputs(teacher)
    t_prob = t_scores.sigmoid()
    weight = t_prob.amax(1)  # (b, A)
    norm = weight.sum().clamp(min=1.0)
    cls = (F.binary_cross_entropy_with_logits(s_scores, t_prob, reduction="none").sum(1) * weight).sum() / norm
    b, _, a = s_boxes.shape
    s_box = s_boxes.view(b, 4, -1, a).log_softmax(2)
    t_box = t_boxes.view(b, 4, -1, a).log_softmax(2)
    box = (F.kl_div(s_box, t_box, reduction="none", log_target=True).sum((1, 2)) * weight).sum() / norm
    return cls + box


class SupernetCriterion:
    """Wraps the stock detection loss: trains this batch's subnets and adds their distillation terms.

    The model arrives with the batch's first subnet active (its `preds` are given). Further subnets of a same-batch
    sandwich run here on the same images; their losses are concatenated into the one vector the trainer sums and
    back-propagates, so all of them land in one optimizer step. A student's distillation target is the largest
    subnet's output: detached from the same batch, or (one subnet per batch) a no-grad forward of the largest.
    Distillation terms are extra elements of the summed loss, so the trainer's loss names and logs stay stock.
    """

    def __init__(self, criterion, model, state):
        self.criterion, self.model, self.state = criterion, model, state

    def __call__(self, preds, batch):
        state = self.state
        (kind, arch), *students = state.batch
        loss, items = self.criterion(preds, batch)
        parts, kd = [loss], 0.0
        if state.cfg["distill"] > 0 and kind != top_kind(state.cfg) and not students:  # one per batch: the top teaches
            with torch.no_grad():
                supernet.set_arch(self.model, state.top_arch)
                teacher = self.model(batch["img"])
                supernet.set_arch(self.model, arch)
            kd = self._distill(preds, teacher, parts)
        state.record(kind, arch, items, kd)
        if students:  # same batch: the largest (first) subnet's outputs teach the rest
            teacher = detach_outputs(preds)
            for kind_s, arch_s in students:
                supernet.set_arch(self.model, arch_s)
                p = self.model(batch["img"])
                loss_s, items_s = self.criterion(p, batch)
                parts.append(loss_s)
                state.record(kind_s, arch_s, items_s, self._distill(p, teacher, parts))
            supernet.set_arch(self.model, arch)
        return torch.cat(parts), items

    def _distill(self, preds, teacher, parts):
        """Append the weighted distillation term (scaled by batch size like the stock loss) to `parts`; returns it."""
        weight = self.state.cfg["distill"]
        if weight == 0:
            return 0.0
        kd = distillation_loss(preds, teacher)
        parts.append((weight * kd * head_outputs(preds)[0].shape[0]).reshape(1))
        return float(kd.detach())

    def update(self):
        if hasattr(self.criterion, "update"):
            self.criterion.update()


@dataclass
class NASState:
    """What the callbacks keep on the trainer (`TrainerView.state`) between events."""

    cfg: dict
    space: dict
    seed: int
    top_arch: dict  # the largest subnet, or the recipe's anchor: trained first in each cycle, validated for best.pt
    anchor: dict = None  # the resolved `anchor:` arch, None for the largest
    batch_index: int = 0
    batch: list = None  # [(kind, arch)] this batch trains, the active one first
    losses: dict = field(default_factory=dict)  # kind -> [batches, box, cls, dfl, kd] sums for this epoch
    subnets: list = field(default_factory=list)  # [epoch, batch, kind, encoded arch] rows for this epoch
    epoch: int = 0
    val_min: dict = None
    calib: list = None
    latency: object = None  # arch -> ms from the `lut:` table, for a `band`

    def record(self, kind, arch, items, kd):
        """Add one trained subnet's losses (the stock loss items and its distillation loss) to this epoch's logs."""
        sums = self.losses.setdefault(kind, [0, 0.0, 0.0, 0.0, 0.0])
        for j, v in enumerate([1, *loss_parts(items), kd]):
            sums[j] += v
        self.subnets.append([self.epoch + 1, self.batch_index, kind, "".join(map(str, encode(self.space, arch)))])


def on_pretrain_routine_start(trainer):
    """Check a model YAML's `nas:` block before Ultralytics scans the dataset, so a typo costs seconds, not a scan."""
    model = TrainerView(trainer).model_source
    if model.endswith((".yaml", ".yml")):
        try:
            cfg = read_model_yaml(model)
        except FileNotFoundError:
            return  # Ultralytics reports it
        if "nas" in cfg:
            parse_nas_config(cfg["nas"], Path(model).name)


def on_pretrain_routine_end(trainer):
    """Set up sampling for a supernet (and refuse a `nas:` block on a model without elastic layers)."""
    from ultralytics.utils import LOGGER

    t = TrainerView(trainer)
    model = t.model
    block = model.yaml.get("nas")
    source = model.yaml.get("yaml_file", "the model YAML")
    if not supernet.elastic_layers(model):
        if block is not None:
            raise NASError(f"{source} has a nas: block but no elastic layers; remove the block or use a supernet YAML.")
        return
    if t.compile:  # torch.compile guards on the active subnet, and DDP's static graph on the parameters it uses
        raise NASError(
            f"compile={t.compile!r} cannot train a supernet: the active subnet changes every batch; "
            "train with compile=False (the default), and compile the extracted subnet instead."
        )
    space = supernet.space_from_model(model)
    cfg = parse_nas_config(block, source, space)
    anchor = resolve_anchor(model, space, cfg, source)
    t.state = state = NASState(
        cfg, space, t.seed, anchor or max_arch(space), anchor, latency=band_latency(model, space, cfg, source)
    )
    wrap_criterion(model, lambda criterion: SupernetCriterion(criterion, model, state))
    if t.start_epoch == 0:  # a resumed run has its trained weights already
        if cfg["init"]:
            load_init(model, cfg["init"], source)
            t.ema.load_state_dict(model.state_dict())
            LOGGER.info(f"nas: weights initialised from {cfg['init']}")
        elif cfg["zero_init"] and not t.weights_given:
            n = zero_init_residuals(model)
            zero_init_residuals(t.ema)
            LOGGER.info(f"nas: zero-initialised the last BatchNorm gamma of {n} residual blocks")

    kinds = cycle(cfg)
    how = (
        f"the cycle {kinds} on every batch (same_batch)"
        if cfg["same_batch"]
        else f"one subnet per batch cycling {kinds}"
    )
    phases = ", ".join(f"{name} to epoch {end}" for (name, _), end in zip(cfg["phases"], phase_ends(cfg, t.epochs)))
    LOGGER.info(
        f"nas: {cfg['sampler']} sampler, {how}, distill={cfg['distill']}, phases: {phases}; "
        f"BN recalibration on {cfg['calib_batches']} train batches"
    )
    if cfg["sampler"] == "sandwich" and not cfg["same_batch"] and t.accumulate != len(kinds):
        LOGGER.warning(
            f"nas: optimizer updates accumulate {t.accumulate} batches but a sandwich is {len(kinds)}; "
            f"set nbs={t.batch_size * len(kinds)} so every update trains {kinds}."
        )
    for name, key in (("nas_epochs.csv", "epoch"), ("nas_subnets.csv", "epoch")):  # a resumed run redoes its epoch
        _truncate_csv(t.save_dir / name, key, t.start_epoch + 1)


def resolve_anchor(model, space, cfg, source):
    """The recipe's `anchor:` as an arch of `space` (None without one); an unknown name or a bad arch file is refused
    before training starts, naming what is allowed."""
    if cfg["anchor"] is None:
        return None
    try:
        return load_arch(cfg["anchor"], space, named=supernet.named_archs(model))
    except NASError as e:
        raise NASError(f"nas: anchor={cfg['anchor']!r} in {source}: {e}") from None


def band_latency(model, space, cfg, source):
    """`arch -> ms` predicted by the `lut:` table for a `band` (None without one); a table of another supernet, or a
    band no subnet can reach, is refused before training starts."""
    if cfg["band"] is None:
        return None
    from .lut import load_lut, predict_us

    lut = load_lut(cfg["lut"], supernet.fingerprint(model))

    def latency(arch):
        return predict_us(lut, space, arch) / 1000

    low, high = cfg["band"]
    smallest, largest = latency(min_arch(space)), latency(max_arch(space))
    if high < smallest or low > largest:
        raise NASError(
            f"nas: band={cfg['band']!r} in {source} holds no subnet: by {cfg['lut']!r} the subnets run from "
            f"{smallest:.3f} to {largest:.3f} ms; give a band that overlaps that range."
        )
    return latency


def zero_init_residuals(model):
    """Zero the last BatchNorm gamma of every residual block of `model` (each starts as identity); returns how many."""
    bns = [bn for m in model.modules() if hasattr(m, "residual_bn") and (bn := m.residual_bn()) is not None]
    for bn in bns:
        torch.nn.init.zeros_(bn.weight)
    return len(bns)


def load_init(model, path, source="the model YAML"):
    """Copy a checkpoint's weights into supernet `model`: the largest subnet's (extracted, then trained) or a supernet's
    of the same space. Anything else is refused naming the first mismatch, never loaded in part."""
    if not Path(path).is_file():
        raise NASError(
            f"nas: init={path!r} in {source} does not exist; "
            "give a .pt checkpoint of the largest subnet or of this supernet."
        )
    weights = supernet.load_model(path).state_dict()
    target = model.state_dict()
    nc = model.yaml.get("nc")
    for key, w in target.items():
        got = weights.get(key)
        if got is None or got.shape != w.shape:
            found = "has no such weight" if got is None else f"has shape {tuple(got.shape)}"
            raise NASError(
                f"nas: init={path!r} does not match the supernet of {source}: its {key!r} {found}, the supernet's has "
                f"shape {tuple(w.shape)} (a checkpoint of another space or class count than nc={nc}?); "
                "give the largest "
                "subnet's or this supernet's checkpoint."
            )
    model.load_state_dict({k: weights[k] for k in target})


def on_train_epoch_start(trainer):
    """Reset the epoch's logs; when narrower widths or expand ratios start training, sort channels by importance
    first."""
    from ultralytics.utils import LOGGER

    t = TrainerView(trainer)
    if t.state is None:
        return
    t.state.batch_index, t.state.epoch = 0, t.epoch
    t.state.losses, t.state.subnets = {}, []
    opened = opened_fields(t.state.space, t.state.cfg, t.epoch, t.epochs, t.state.anchor)
    if "width" in opened:
        orders = channel_order.output_order(t.model)
        channel_order.apply_order(t.model, orders, t.optimizer)
        channel_order.apply_order(t.ema, orders)
        LOGGER.info(f"nas: output channels of {len(orders)} layers with width choices sorted by importance (L1)")
    hidden = channel_order.hidden_order(t.model, opened)
    if hidden:
        channel_order.apply_hidden_order(t.model, hidden, t.optimizer)
        channel_order.apply_hidden_order(t.ema, hidden)
        LOGGER.info(
            f"nas: {len(hidden)} groups of hidden channels that {' and '.join(sorted(opened))} narrow sorted by "
            "importance (L1)"
        )


def on_train_batch_start(trainer):
    t = TrainerView(trainer)
    state = t.state
    if state is None:
        return
    state.batch = sample(
        state.space,
        state.cfg,
        state.seed,
        t.epoch,
        state.batch_index,
        t.batches_per_epoch,
        t.epochs,
        state.latency,
        state.anchor,
    )
    supernet.set_arch(t.model, state.batch[0][1])


def on_train_batch_end(trainer):
    state = TrainerView(trainer).state
    if state is not None:
        state.batch_index += 1


def on_train_epoch_end(trainer):
    """Before the stock validation and checkpoint: log the epoch's subnets, recalibrate BN for min (validate and log
    it), then for max (scored by stock)."""
    from ultralytics.utils import LOGGER

    t = TrainerView(trainer)
    state = t.state
    if state is None or not is_main_process():
        return
    parts = [f"{k} {sum(sums[1:4]) / sums[0]:.3f}" for k, sums in state.losses.items()]
    LOGGER.info(f"nas: epoch {t.epoch + 1} mean loss per subnet kind (box+cls+dfl): {', '.join(parts)}")
    # before the trainer saves last.pt: a run killed after that checkpoint resumes past this epoch, never redoing it
    _append_csv(t.save_dir / "nas_subnets.csv", ("epoch", "batch", "subnet", "arch_code"), state.subnets)
    state.subnets = []
    if not t.validates_now:
        return
    state.val_min = None
    if state.cfg["val_min"]:
        supernet.set_arch(t.ema, min_arch(state.space))
        _recalibrate(t)
        state.val_min = t.validate_quietly()
        LOGGER.info(
            f"nas: smallest subnet after BN recalibration: mAP50 {state.val_min[0]:.4f}, "
            f"mAP50-95 {state.val_min[1]:.4f}"
        )
    supernet.set_arch(t.ema, state.top_arch)
    _recalibrate(t)


def _recalibrate(t):
    """Re-estimate the EMA model's BatchNorm statistics for its active subnet on the run's calibration batches."""
    state = t.state
    if state.cfg["calib_batches"] == 0:
        return
    if state.calib is None:
        state.calib = calibration_batches(t.data, t.imgsz, t.batch_size, state.cfg["calib_batches"], state.seed)
    recalibrate_bn(t.ema, state.calib)


def on_fit_epoch_end(trainer):
    """Append this epoch's per-kind losses (and min/max mAP) to nas_epochs.csv (its subnets went out before the
    checkpoint, in `on_train_epoch_end`)."""
    t = TrainerView(trainer)
    state = t.state
    if state is None or not is_main_process() or not state.losses:  # also called again after the final validation
        return
    val = {"min": state.val_min, top_kind(state.cfg): t.last_metrics}
    rows = []
    for kind, sums in state.losses.items():
        means = [round(v / sums[0], 5) for v in sums[1:]]
        rows.append([t.epoch + 1, kind, sums[0], *means, *(val.get(kind) or ("", ""))])
    _append_csv(t.save_dir / "nas_epochs.csv", EPOCH_COLUMNS, rows)
    state.losses = {}


def _append_csv(path, columns, rows):
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(columns)
        writer.writerows(rows)


def _truncate_csv(path, key, first_redone):
    """Drop rows whose `key` column is >= `first_redone` (they belong to an epoch a resumed run trains again), and a
    torn last row (a run killed while appending it). A file killed before its header was flushed is removed, so the
    next append starts it again with the header."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or key not in rows[0]:
        path.unlink()
        return
    header, i = rows[0], rows[0].index(key)
    kept = [header] + [r for r in rows[1:] if len(r) == len(header) and r[i].isdigit() and int(r[i]) < first_redone]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)


CALLBACKS = {
    "on_pretrain_routine_start": on_pretrain_routine_start,
    "on_pretrain_routine_end": on_pretrain_routine_end,
    "on_train_epoch_start": on_train_epoch_start,
    "on_train_batch_start": on_train_batch_start,
    "on_train_batch_end": on_train_batch_end,
    "on_train_epoch_end": on_train_epoch_end,
    "on_fit_epoch_end": on_fit_epoch_end,
}
