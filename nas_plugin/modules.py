"""YAML-level modules: elastic supernet stages and their static twins.

Argument order follows Ultralytics repeat modules (`c1, c2, n, ...`): `parse_model` prepends the input width and
inserts the row's `n` (the number of blocks; for an elastic module, its largest depth). Each elastic module knows
its choices (`space_entry`), runs one subnet at a time (`set_active`), and names the static module + YAML arguments
that reproduce that subnet (`static_row`); the static module's state-dict keys are a subset of the elastic one's so
`inherit_state` can copy weights across.
"""

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .elastic_ops import (
    ACTIVATIONS,
    ActSwitch,
    ElasticConvBN,
    ElasticSE,
    SqueezeExcite,
    conv_rows,
    make_act,
    pad_channels,
    sliced_batch_norm,
)
from .errors import NASError
from .integration import conv, make_divisible, sppf


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _choices(owner, field, values, ok, allowed):
    """Validate a choice list from a YAML row; returns it ordered smallest to largest (the YAML order for names)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values:
        raise NASError(f"{owner} {field} choices are empty; give at least one value ({allowed}).")
    for v in values:
        if not ok(v):
            raise NASError(f"{owner} {field} {v!r} is not allowed; {field} must be {allowed}.")
    if len(set(values)) != len(values):
        raise NASError(f"{owner} {field} choices {values} repeat a value; list each choice once.")
    return values if isinstance(values[0], str) else sorted(values)


def _kernels(owner, values):
    return _choices(
        owner, "kernel", values, lambda v: _is_int(v) and v >= 1 and v % 2, "an odd integer >= 1 (e.g. 3, 5, 7)"
    )


def _expands(owner, values):
    return _choices(
        owner,
        "expand",
        values,
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 1,
        "a number >= 1 (e.g. 3, 4, 6)",
    )


def _ratios(owner, values):
    return _choices(
        owner,
        "expand",
        values,
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v <= 4,
        "a number in (0, 4] (e.g. 0.5, 1.0)",
    )


def _acts(owner, values):
    return _choices(owner, "activation", values, lambda v: v in ACTIVATIONS, f"one of {sorted(ACTIVATIONS)}")


def _depths(owner, values, n):
    depths = _choices(
        owner, "depth", values, lambda v: _is_int(v) and 1 <= v <= n, f"an integer from 1 to the row's n={n}"
    )
    if depths[-1] != n:
        raise NASError(f"{owner} largest depth {depths[-1]} differs from the row's n={n}; set n to the largest depth.")
    return depths


def _widths(owner, values, c2):
    """Validate width choices (fractions of the row's `c2` output channels, smallest to largest, the last 1.0);
    returns (widths, channel counts), a width whose count (rounded up to a multiple of 8) repeats a larger one's
    dropped, so every choice is a distinct subnet."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    for v in values:
        if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v <= 1):
            raise NASError(f"{owner} width {v!r} is not allowed; width must be a number in (0, 1] (a share of c2).")
    if not values or values != sorted(set(values)) or values[-1] != 1:
        raise NASError(
            f"{owner} width choices {values} must list each width once, smallest to largest, ending at 1.0 "
            "(e.g. [0.5, 0.75, 1.0])."
        )
    by_channels = {c2 if v == 1 else min(make_divisible(c2 * v, 8), c2): v for v in values}  # larger replaces smaller
    return list(by_channels.values()), list(by_channels)


def _per_block(owner, field, values, n, check):
    """A static per-block setting: one value for all n blocks, or a list of exactly n values."""
    values = list(values) if isinstance(values, (list, tuple)) else [values] * n
    if len(values) != n:
        raise NASError(f"{owner} has {len(values)} {field} values {values} for n={n} blocks; give one or {n}.")
    check(owner, list(dict.fromkeys(values)))
    return values


_BN = ("weight", "bias", "running_mean", "running_var")  # a BatchNorm's per-channel tensors


def _conv_outputs(prefix):
    """[(key, 0)] of a Conv's (conv + bn) tensors indexed by its output channels; `prefix` names the Conv ('' or
    'child.')."""
    return [(f"{prefix}conv.weight", 0), *((f"{prefix}bn.{b}", 0) for b in _BN)]


def hidden_group(fields, size, moves, reads):
    """A group of hidden channels for `channel_order`: `size` channels that the choices in `fields` keep a leading
    slice of, indexed by the tensors in `moves` and read by the weights in `reads` (importance: their L1 norm), each
    as (key, dim, offset of the group in that dim)."""
    return {"fields": fields, "size": size, "moves": moves, "reads": reads}


def conv_output_slices(prefix, offset=0):
    """A Conv's output tensors as (key, dim, offset) entries of a hidden group."""
    return [(key, dim, offset) for key, dim in _conv_outputs(prefix)]


def _halves(c, full):
    """The channels a CSP block of hidden width c uses out of the concatenation of two halves `full` wide each."""
    return [*range(c), *range(full, full + c)]


def _split_entry(choices, in_shapes, out_shape, hidden, make_block):
    """A CSP block's latency-table entry: its input conv to `hidden` channels (`part: input`), the rest reading
    `hidden` channels (`part: body`, see `Body`), or the whole block from `make_block()`."""
    part = choices.get("part")
    if part == "input":
        return conv(in_shapes[0][1], hidden, 1, act=make_act(choices["act"])), in_shapes
    block = make_block()
    if part == "body":
        return Body(block), [(out_shape[0], hidden, *out_shape[2:])]
    return block, in_shapes


class Body(nn.Module):
    """A block without its first conv (`block.body`), timed as a latency-table entry."""

    def __init__(self, block):
        super().__init__()
        del block.cv1  # not run, so not counted among the entry's weights
        self.block = block

    def forward(self, y):
        return self.block.body(y)


class ElasticModule(nn.Module):
    """Base of the supernet modules: one active subnet config (a unit of an arch dict) at a time.

    A module with width choices computes the leading channels of the chosen width and zero-pads its output to the
    full width; `input_weights` names the weights that read its input, which extraction gathers at the input's live
    channels (`nas_plugin.channels`).
    """

    widths, width_channels = (1.0,), None  # no width choices (also what modules pickled before width was added get)

    def _init_widths(self, widths, c2):
        self.widths, self.width_channels = _widths(type(self).__name__, widths, c2)

    def _width_choices(self):
        """The per-unit `width` field of the space: only when there is a choice (spaces without width stay as they
        were, tables and archs included)."""
        return {"width": list(self.widths)} if len(self.widths) > 1 else {}

    def _full_width(self):
        """The largest subnet's `width` field ({} without a choice)."""
        return {k: v[-1] for k, v in self._width_choices().items()}

    def full_channels(self):
        """Output channels at full width."""
        raise NotImplementedError

    def out_channels(self, unit):
        """Output channels of the subnet `unit` describes."""
        return self.width_channels[self.widths.index(unit["width"])] if "width" in unit else self.full_channels()

    def input_weights(self):
        """Per input, the state-dict keys of the weights whose dim 1 reads it; None: this module cannot follow an
        input narrower than the supernet's (a layer before it with width choices is refused)."""
        return None

    def inherit_gathers(self, unit):
        """{key: {dim: indices}} of the weights `unit` uses that are not leading slices (see `inherit_state`)."""
        return {}

    output_conv = None  # the Conv (conv + bn) that makes the output: a child's name, or None for the module's own

    def output_weights(self):
        """[(state-dict key, dim)] of the tensors indexed by this module's output channels (reordered together by
        `channel_order`)."""
        return _conv_outputs(f"{self.output_conv}." if self.output_conv else "")

    def hidden_groups(self):
        """The channels inside the module that narrower choices take a leading slice of (see `_hidden`), sorted by
        importance by `channel_order` before those choices start training."""
        return []

    def space_entry(self):
        """This module's choices as plain data: {'module', 'depth', 'per_block': {...}, 'per_unit': {...}}."""
        raise NotImplementedError

    def set_active(self, unit):
        """Run the subnet described by `unit` (validated by the caller against `space_entry`)."""
        raise NotImplementedError

    def static_row(self, unit):
        """(n, module name, YAML args after c2) of the static module that computes the same as `unit`."""
        raise NotImplementedError

    def latency_entry(self, choices, in_shapes, out_shape):
        """(static module, its input shapes) timed for one latency-table entry of this layer: `choices` are one of
        `nas_plugin.lut.unit_entries`; `in_shapes` are what the entry reads (its `c1` if it has one) and
        `out_shape` the layer's full output in the supernet."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------- MBConv stages
class MBConvBlock(nn.Module):
    """MobileNetV3 inverted residual: 1x1 expand -> k x k depthwise (stride s) -> optional SE -> 1x1 project."""

    def __init__(self, c1, c2, k=3, e=4, s=1, se=False, act="relu"):
        super().__init__()
        mid = make_divisible(c1 * e, 8)
        self.expand = conv(c1, mid, 1, act=make_act(act))
        self.dw = conv(mid, mid, k, s, g=mid, act=make_act(act))
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = conv(mid, c2, 1, act=False)
        self.residual = s == 1 and c1 == c2

    def residual_bn(self):
        return self.project.bn if self.residual else None

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class ElasticMBConvBlock(nn.Module):
    """`MBConvBlock` at its largest kernel and expand ratio; runs any smaller (k, e) on shared weights."""

    def __init__(self, c1, c2, k, e, s, se, act):
        super().__init__()
        mid = make_divisible(c1 * e, 8)
        self.expand = ElasticConvBN(c1, mid, 1)
        self.dw = ElasticConvBN(mid, mid, k, s, depthwise=True)
        self.se = ElasticSE(mid) if se else None
        self.project = ElasticConvBN(mid, c2, 1)
        self.act = make_act(act)
        self.residual = s == 1 and c1 == c2

    def residual_bn(self):
        return self.project.bn if self.residual else None

    def forward(self, x, k, e, c2, cols=None):
        """At kernel k and expand e to `c2` outputs, reading the expand weights' columns `cols` (default: leading)."""
        mid = make_divisible(x.shape[1] * e, 8)
        y = self.act(self.dw(self.act(self.expand(x, mid, cols=cols)), mid, k))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, c2)
        return x + y if self.residual else y


class MBConvStage(nn.Module):
    """A static MobileNetV3 stage of n MBConv blocks; the first has stride s, each has its own kernel and expand."""

    def __init__(self, c1, c2, n=1, s=1, se=False, act="relu", kernels=3, expands=4):
        super().__init__()
        name = type(self).__name__
        make_act(act)  # validates the name
        kernels = _per_block(name, "kernel", kernels, n, _kernels)
        expands = _per_block(name, "expand", expands, n, _expands)
        self.blocks = nn.Sequential(
            *(
                MBConvBlock(c1 if i == 0 else c2, c2, k, e, s if i == 0 else 1, se, act)
                for i, (k, e) in enumerate(zip(kernels, expands))
            )
        )

    def forward(self, x):
        return self.blocks(x)


class ElasticMBConvStage(ElasticModule):
    """An elastic MBConv stage: depth from `depths`, per block a kernel from `kernels` and expand from `expands`, and
    one output width from `widths`. A narrower stage runs its leading channels: each block's hidden width is its live
    input width x expand (the first block's follows the stage's input, as a narrower stage's would)."""

    def __init__(
        self,
        c1,
        c2,
        n=4,
        s=1,
        se=False,
        act="relu",
        kernels=(3, 5, 7),
        expands=(3, 4, 6),
        depths=(2, 3, 4),
        widths=(1.0,),
    ):
        super().__init__()
        name = type(self).__name__
        make_act(act)
        self.kernels, self.expands, self.depths = (
            _kernels(name, kernels),
            _expands(name, expands),
            _depths(name, depths, n),
        )
        self._init_widths(widths, c2)
        if len(self.widths) > 1 and s == 1 and c1 == c2:
            raise NASError(
                f"{name} width choices {list(widths)} need stride 2 or c1 != c2 (here c1=c2={c2}, s=1): the first "
                "block's residual would tie the stage's width to its input's; give this row a single width [1.0]."
            )
        self.s, self.se, self.act = s, se, act
        self.live_in = None  # the input's live channels when narrower (set by `supernet.set_arch`)
        kmax, emax = self.kernels[-1], self.expands[-1]
        self.blocks = nn.ModuleList(
            ElasticMBConvBlock(c1 if i == 0 else c2, c2, kmax, emax, s if i == 0 else 1, se, act) for i in range(n)
        )
        self.set_active({"depth": n, "kernel": [kmax] * n, "expand": [emax] * n, **self._full_width()})

    def full_channels(self):
        return self.blocks[0].project.conv.out_channels

    def input_weights(self):
        return None if self.blocks[0].residual else [["blocks.0.expand.conv.weight"]]

    def set_input_live(self, live):
        self.live_in = None if len(live[0]) == self.blocks[0].expand.conv.in_channels else live[0]

    def output_weights(self):
        """Every block's projection makes the stage's channels (residuals add them) and every later block reads them."""
        out = [key for i in range(len(self.blocks)) for key in _conv_outputs(f"blocks.{i}.project.")]
        return out + [(f"blocks.{i}.expand.conv.weight", 1) for i in range(1, len(self.blocks))]

    def hidden_groups(self):
        """Each block's expanded channels: made by expand, filtered by the depthwise conv, gated by SE, read by
        project."""
        groups = []
        for i, block in enumerate(self.blocks):
            b = f"blocks.{i}."
            se = [(f"{b}se.fc1.weight", 1, 0), (f"{b}se.fc2.weight", 0, 0), (f"{b}se.fc2.bias", 0, 0)]
            moves = (
                conv_output_slices(f"{b}expand.") + conv_output_slices(f"{b}dw.") + (se if block.se is not None else [])
            )
            groups.append(
                hidden_group(
                    ("expand", "width"), block.expand.conv.out_channels, moves, [(f"{b}project.conv.weight", 1, 0)]
                )
            )
        return groups

    def space_entry(self):
        return {
            "module": type(self).__name__,
            "depth": list(self.depths),
            "per_block": {"kernel": list(self.kernels), "expand": list(self.expands)},
            "per_unit": self._width_choices(),
        }

    def set_active(self, unit):
        self.active = {"depth": unit["depth"], "kernel": list(unit["kernel"]), "expand": list(unit["expand"])}
        if "width" in unit:
            self.active["width"] = unit["width"]

    def static_row(self, unit):
        return unit["depth"], "MBConvStage", [self.s, self.se, self.act, list(unit["kernel"]), list(unit["expand"])]

    def latency_entry(self, choices, in_shapes, out_shape):
        """One block: at position 0 it takes the stage's input (stride s), at 1 (any later block) the stage's output."""
        c2, first = self.out_channels(choices), choices["position"] == 0
        block = MBConvBlock(
            in_shapes[0][1] if first else c2,
            c2,
            choices["kernel"],
            choices["expand"],
            self.s if first else 1,
            self.se,
            self.act,
        )
        return block, in_shapes if first else [(out_shape[0], c2, *out_shape[2:])]

    def forward(self, x):
        a, c2, cols = self.active, self.out_channels(self.active), None
        if self.live_in is not None:  # only the live input channels, as the narrower stage reads them
            cols = torch.as_tensor(self.live_in, device=x.device)
            x = x.index_select(1, cols)
        for i, (block, k, e) in enumerate(zip(self.blocks[: a["depth"]], a["kernel"], a["expand"])):
            x = block(x, k, e, c2, cols if i == 0 else None)
        return pad_channels(x, self.full_channels())


# ------------------------------------------------------------------------------------------- MBottleneckCSP (neck)
class CSPBottleneck(nn.Module):
    """1x1 conv -> k x k conv, no shortcut (the bottleneck of Scaled-YOLOv4's BottleneckCSP2)."""

    def __init__(self, c, k=3, act="relu"):
        super().__init__()
        self.cv1 = conv(c, c, 1, act=make_act(act))
        self.cv2 = conv(c, c, k, act=make_act(act))

    def forward(self, x):
        return self.cv2(self.cv1(x))


class MBottleneckCSP(nn.Module):
    """Static BottleneckCSP2 with a chosen kernel and activation (seed 001's MBottleneckCSP2), hidden width c2/2."""

    def __init__(self, c1, c2, n=1, k=3, act="relu"):
        super().__init__()
        name = type(self).__name__
        _kernels(name, k), _acts(name, act)
        c_ = c2 // 2
        self.cv1 = conv(c1, c_, 1, act=make_act(act))
        self.m = nn.Sequential(*(CSPBottleneck(c_, k, act) for _ in range(n)))
        self.cv2 = nn.Conv2d(c_, c_, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = make_act(act)
        self.cv3 = conv(2 * c_, c2, 1, act=make_act(act))

    def forward(self, x):
        return self.body(self.cv1(x))

    def body(self, x1):
        """Everything after cv1 (a latency-table entry of its own when the block's input width varies)."""
        return self.cv3(self.act(self.bn(torch.cat((self.m(x1), self.cv2(x1)), 1))))


class ElasticCSPBottleneck(nn.Module):
    """`CSPBottleneck` with an elastic kernel; its activations are switched by the owning block."""

    def __init__(self, c, k, acts):
        super().__init__()
        self.cv1 = conv(c, c, 1, act=ActSwitch(acts))
        self.cv2 = ElasticConvBN(c, c, k)
        self.act = ActSwitch(acts)

    def forward(self, x, k):
        c = x.shape[1]  # the block's hidden width: less for a narrower MBottleneckCSP
        return self.act(self.cv2(conv_rows(self.cv1, x, c), c, k))


class ElasticMBottleneckCSP(ElasticModule):
    """An elastic `MBottleneckCSP`: one kernel, one activation, a depth and a width chosen per block (unit).

    A narrower width w (hidden c' = c2' / 2) takes the leading c' channels of cv1, the bottlenecks and cv2, the
    matching channels of each half of the concatenation (BatchNorm rows, cv3 columns) and the leading c2' outputs.
    """

    output_conv = "cv3"

    def __init__(
        self, c1, c2, n=3, kernels=(3, 5), acts=("relu", "leakyrelu", "mish"), depths=(1, 2, 3), widths=(1.0,)
    ):
        super().__init__()
        name = type(self).__name__
        self.kernels, self.acts, self.depths = _kernels(name, kernels), _acts(name, acts), _depths(name, depths, n)
        self._init_widths(widths, c2)
        self.c_ = c_ = c2 // 2
        self.cv1 = conv(c1, c_, 1, act=ActSwitch(self.acts))
        self.m = nn.ModuleList(ElasticCSPBottleneck(c_, self.kernels[-1], self.acts) for _ in range(n))
        self.cv2 = nn.Conv2d(c_, c_, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = ActSwitch(self.acts)
        self.cv3 = conv(2 * c_, c2, 1, act=ActSwitch(self.acts))
        self.set_active({"depth": n, "kernel": self.kernels[-1], "act": self.acts[-1], **self._full_width()})

    def full_channels(self):
        return self.cv3.conv.out_channels

    def input_weights(self):
        return [["cv1.conv.weight"]]

    def hidden_groups(self):
        """cv1's output (read by the first bottleneck and cv2), each bottleneck's inner channels, the bottlenecks'
        outputs (one order: any of them can be the last, read by the first half of bn and cv3) and cv2's output (the
        second half)."""
        c, n, w = self.c_, len(self.m), ("width",)
        chain_moves = [key for i in range(n) for key in conv_output_slices(f"m.{i}.cv2.")]
        return [
            hidden_group(w, c, conv_output_slices("cv1."), [("m.0.cv1.conv.weight", 1, 0), ("cv2.weight", 1, 0)]),
            *(
                hidden_group(w, c, conv_output_slices(f"m.{i}.cv1."), [(f"m.{i}.cv2.conv.weight", 1, 0)])
                for i in range(n)
            ),
            hidden_group(
                w,
                c,
                chain_moves + [(f"bn.{k}", 0, 0) for k in _BN],
                [(f"m.{i}.cv1.conv.weight", 1, 0) for i in range(1, n)] + [("cv3.conv.weight", 1, 0)],
            ),
            hidden_group(w, c, [("cv2.weight", 0, 0)] + [(f"bn.{k}", 0, c) for k in _BN], [("cv3.conv.weight", 1, c)]),
        ]

    def space_entry(self):
        return {
            "module": type(self).__name__,
            "depth": list(self.depths),
            "per_block": {},
            "per_unit": {"kernel": list(self.kernels), "act": list(self.acts), **self._width_choices()},
            "entry_input": ["act", *self._width_choices()],  # what cv1, the part reading the input, depends on
        }

    def set_active(self, unit):
        self.active = {k: unit[k] for k in ("depth", "kernel", "act", "width") if k in unit}
        for m in self.modules():
            if isinstance(m, ActSwitch):
                m.name = unit["act"]

    def _halves(self, unit):
        """(hidden width c', the concatenation's channels it uses); None for the second at full width."""
        c = self.out_channels(unit) // 2
        return c, (None if c == self.c_ else _halves(c, self.c_))

    def inherit_gathers(self, unit):
        _, picks = self._halves(unit)
        if picks is None:
            return {}
        return {**{f"bn.{k}": {0: picks} for k in _BN}, "cv3.conv.weight": {1: picks}}

    def static_row(self, unit):
        return unit["depth"], "MBottleneckCSP", [unit["kernel"], unit["act"]]

    def latency_entry(self, choices, in_shapes, out_shape):
        """The whole block for one depth x kernel x activation (x width) choice; when the input width varies, cv1 for
        each input width x activation x width (`part: input`) and the rest for each choice (`part: body`)."""
        c1, c2, c = in_shapes[0][1], self.out_channels(choices), choices
        return _split_entry(
            c, in_shapes, out_shape, c2 // 2, lambda: MBottleneckCSP(c1, c2, c["depth"], c["kernel"], c["act"])
        )

    def forward(self, x):
        a = self.active
        c, picks = self._halves(a)
        x1 = y = conv_rows(self.cv1, x, c)
        for block in self.m[: a["depth"]]:
            y = block(y, a["kernel"])
        y = torch.cat((y, F.conv2d(x1, self.cv2.weight[:c, :c])), 1)
        rows = None if picks is None else torch.as_tensor(picks, device=y.device)
        y = conv_rows(self.cv3, self.act(sliced_batch_norm(self.bn, y, rows)), self.out_channels(a), rows)
        return pad_channels(y, self.full_channels())


# ------------------------------------------------------------------------------------ C2f (YOLOv8's CSP block)
class C2fBottleneck(nn.Module):
    """k x k conv to int(c * e) channels -> k x k conv back to c, optional shortcut (Ultralytics `Bottleneck`'s
    keys)."""

    def __init__(self, c, k=3, e=1.0, shortcut=True, act="silu"):
        super().__init__()
        self.cv1 = conv(c, int(c * e), k, act=make_act(act))
        self.cv2 = conv(int(c * e), c, k, act=make_act(act))
        self.add = shortcut

    def residual_bn(self):
        return self.cv2.bn if self.add else None

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class MC2f(nn.Module):
    """Ultralytics `C2f` with a chosen bottleneck kernel, bottleneck expand ratio and activation (seed 001's choices on
    YOLOv8's CSP topology). At k=3, e=1.0, silu it is `C2f` weight for weight, and extraction writes it as `C2f`."""

    def __init__(self, c1, c2, n=1, shortcut=False, k=3, e=1.0, act="silu"):
        super().__init__()
        name = type(self).__name__
        _kernels(name, k), _ratios(name, e), _acts(name, act)
        self.c = int(c2 * 0.5)  # C2f's hidden width
        self.cv1 = conv(c1, 2 * self.c, 1, act=make_act(act))
        self.cv2 = conv((2 + n) * self.c, c2, 1, act=make_act(act))
        self.m = nn.ModuleList(C2fBottleneck(self.c, k, e, shortcut, act) for _ in range(n))

    def forward(self, x):
        return self.body(self.cv1(x))

    def body(self, y):
        """Everything after cv1 (a latency-table entry of its own when the block's input width varies)."""
        y = list(y.chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class ElasticC2fBottleneck(nn.Module):
    """`C2fBottleneck` at its largest kernel and expand ratio; its activation is switched by the owning block."""

    def __init__(self, c, k, e, shortcut, acts):
        super().__init__()
        self.c = c
        self.cv1 = ElasticConvBN(c, int(c * e), k)
        self.cv2 = ElasticConvBN(int(c * e), c, k)
        self.act = ActSwitch(acts)
        self.add = shortcut

    def residual_bn(self):
        return self.cv2.bn if self.add else None

    def forward(self, x, k, e):
        c = x.shape[1]  # the block's width: c at full width, less for a narrower C2f
        y = self.act(self.cv2(self.act(self.cv1(x, int(c * e), k)), c, k))
        return x + y if self.add else y


class ElasticC2f(ElasticModule):
    """An elastic `MC2f`: depth, and one bottleneck kernel, expand ratio, activation and width per block (unit).

    C2f concatenates its blocks' outputs after the two halves of cv1, so depth d uses the leading (2 + d) * c input
    channels of cv2: a shallower subnet is a leading slice. A narrower width w (hidden c' = c2' / 2) takes the
    leading c' channels of each half of cv1 and of each chunk cv2 reads, and the leading c2' outputs.
    """

    output_conv = "cv2"

    def __init__(
        self,
        c1,
        c2,
        n=2,
        shortcut=False,
        kernels=(3, 5),
        expands=(0.5, 1.0),
        acts=("relu", "silu"),
        depths=(1, 2),
        widths=(1.0,),
    ):
        super().__init__()
        name = type(self).__name__
        self.kernels, self.expands = _kernels(name, kernels), _ratios(name, expands)
        self.acts, self.depths = _acts(name, acts), _depths(name, depths, n)
        self._init_widths(widths, c2)
        self.shortcut, self.c = bool(shortcut), int(c2 * 0.5)
        self.cv1 = conv(c1, 2 * self.c, 1, act=ActSwitch(self.acts))
        self.m = nn.ModuleList(
            ElasticC2fBottleneck(self.c, self.kernels[-1], self.expands[-1], self.shortcut, self.acts) for _ in range(n)
        )
        self.cv2 = ElasticConvBN((2 + n) * self.c, c2, 1)
        self.act = ActSwitch(self.acts)
        self.set_active(
            {
                "depth": n,
                "kernel": self.kernels[-1],
                "expand": self.expands[-1],
                "act": self.acts[-1],
                **self._full_width(),
            }
        )

    def full_channels(self):
        return self.cv2.conv.out_channels

    def input_weights(self):
        return [["cv1.conv.weight"]]

    def hidden_groups(self):
        """cv1's two halves and the bottlenecks' outputs (each read by cv2 at its chunk; with shortcuts the second
        half and every output are one residual stream, one order), and each bottleneck's inner channels."""
        c, n, w = self.c, len(self.m), ("width",)
        groups = [hidden_group(w, c, conv_output_slices("cv1."), [("cv2.conv.weight", 1, 0)])]
        streams = [(conv_output_slices("cv1.", c), [("m.0.cv1.conv.weight", 1, 0), ("cv2.conv.weight", 1, c)])]
        for i in range(n):
            reads = [("cv2.conv.weight", 1, (2 + i) * c)] + (
                [(f"m.{i + 1}.cv1.conv.weight", 1, 0)] if i + 1 < n else []
            )
            streams.append((conv_output_slices(f"m.{i}.cv2."), reads))
        if self.shortcut:
            streams = [tuple(sum(parts, []) for parts in zip(*streams))]
        groups += [hidden_group(w, c, moves, reads) for moves, reads in streams]
        inner = self.m[0].cv1.conv.out_channels
        return groups + [
            hidden_group(
                ("expand", "width"), inner, conv_output_slices(f"m.{i}.cv1."), [(f"m.{i}.cv2.conv.weight", 1, 0)]
            )
            for i in range(n)
        ]

    def space_entry(self):
        return {
            "module": type(self).__name__,
            "depth": list(self.depths),
            "per_block": {},
            "per_unit": {
                "kernel": list(self.kernels),
                "expand": list(self.expands),
                "act": list(self.acts),
                **self._width_choices(),
            },
            "entry_input": ["act", *self._width_choices()],  # what cv1, the part reading the input, depends on
        }

    def set_active(self, unit):
        self.active = {k: unit[k] for k in ("depth", "kernel", "expand", "act", "width") if k in unit}
        for m in self.modules():
            if isinstance(m, ActSwitch):
                m.name = unit["act"]

    def _picks(self, unit):
        """(hidden width c', cv1's output rows, cv2's input columns) of `unit`; None, None at full width."""
        c = self.out_channels(unit) // 2
        if c == self.c:
            return c, None, None
        rows = _halves(c, self.c)
        cols = [j * self.c + i for j in range(2 + unit["depth"]) for i in range(c)]
        return c, rows, cols

    def inherit_gathers(self, unit):
        _, rows, cols = self._picks(unit)
        if rows is None:
            return {}
        bn = {f"cv1.bn.{k}": {0: rows} for k in _BN}
        return {"cv1.conv.weight": {0: rows}, **bn, "cv2.conv.weight": {1: cols}}

    def static_row(self, unit):
        if (unit["kernel"], unit["expand"], unit["act"]) == (
            3,
            1.0,
            "silu",
        ):  # YOLOv8's own block: deployable without the plugin
            return unit["depth"], "C2f", [self.shortcut]
        return unit["depth"], "MC2f", [self.shortcut, unit["kernel"], unit["expand"], unit["act"]]

    def latency_entry(self, choices, in_shapes, out_shape):
        """The whole block for one depth x kernel x expand x activation (x width) choice; when the input width varies,
        cv1 for each input width x activation x width (`part: input`) and the rest for each choice (`part: body`)."""
        c1, c2, c = in_shapes[0][1], self.out_channels(choices), choices
        return _split_entry(
            c,
            in_shapes,
            out_shape,
            c2 // 2 * 2,
            lambda: MC2f(c1, c2, c["depth"], self.shortcut, c["kernel"], c["expand"], c["act"]),
        )

    def forward(self, x):
        a = self.active
        c, rows, cols = self._picks(a)
        if rows is None:
            y = list(self.cv1(x).chunk(2, 1))
        else:
            y = list(conv_rows(self.cv1, x, self._index(rows)).split(c, 1))
        y.extend(block(y[-1], a["kernel"], a["expand"]) for block in self.m[: a["depth"]])
        y = self.cv2(torch.cat(y, 1), self.out_channels(a), cols=None if cols is None else self._index(cols))
        return pad_channels(self.act(y), self.full_channels())

    def _index(self, picks):
        return torch.as_tensor(picks, dtype=torch.long, device=self.cv2.conv.weight.device)


class ElasticLayer(ElasticModule):
    """A single layer whose only choice is its width (depth 1)."""

    def __init__(self, widths, c2):
        super().__init__()
        self._init_widths(widths, c2)
        self.set_active({"depth": 1, **self._full_width()})

    def space_entry(self):
        return {"module": type(self).__name__, "depth": [1], "per_block": {}, "per_unit": self._width_choices()}

    def set_active(self, unit):
        self.active = dict(unit)


class ElasticConv(ElasticLayer):
    """Ultralytics `Conv` (conv, BN, SiLU) with width choices: `[c2, k, s, widths]`; extracts to a stock `Conv`."""

    def __init__(self, c1, c2, k=1, s=1, widths=(1.0,)):
        super().__init__(widths, c2)
        self.k, self.s = k, s
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def full_channels(self):
        return self.conv.out_channels

    def input_weights(self):
        return [["conv.weight"]]

    def static_row(self, unit):
        return 1, "Conv", [self.k, self.s]

    def latency_entry(self, choices, in_shapes, out_shape):
        return conv(in_shapes[0][1], self.out_channels(choices), self.k, self.s), in_shapes

    def forward(self, x):
        return pad_channels(conv_rows(self, x, self.out_channels(self.active)), self.full_channels())


class ElasticSPPF(ElasticLayer):
    """Ultralytics `SPPF` (as YOLOv8's YAML builds it) with width choices, `[c2, k, widths]`: its hidden width
    follows its input's live width (`c1 // 2`), as a narrower SPPF's would; extracts to a stock `SPPF`."""

    output_conv = "cv2"

    def __init__(self, c1, c2, k=5, widths=(1.0,)):
        super().__init__(widths, c2)
        self.k, self.c_ = k, c1 // 2
        self.cv1 = conv(c1, self.c_, 1)
        self.cv2 = conv(self.c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.hidden = self.c_

    def full_channels(self):
        return self.cv2.conv.out_channels

    def input_weights(self):
        return [["cv1.conv.weight"]]

    def set_input_live(self, live):
        """Follow the live width of the input (set by `supernet.set_arch`)."""
        self.hidden = len(live[0]) // 2

    def hidden_groups(self):
        """cv1's output, pooled three times (channel-wise) and read by cv2 at each of the four chunks."""
        reads = [("cv2.conv.weight", 1, j * self.c_) for j in range(4)]
        return [hidden_group(("width",), self.c_, conv_output_slices("cv1."), reads)]

    def _cols(self):
        return [j * self.c_ + i for j in range(4) for i in range(self.hidden)]

    def inherit_gathers(self, unit):
        return {} if self.hidden == self.c_ else {"cv2.conv.weight": {1: self._cols()}}

    def static_row(self, unit):
        return 1, "SPPF", [self.k]

    def latency_entry(self, choices, in_shapes, out_shape):
        return sppf(in_shapes[0][1], self.out_channels(choices), self.k), in_shapes

    def forward(self, x):
        y = [conv_rows(self.cv1, x, self.hidden)]
        y.extend(self.m(y[-1]) for _ in range(3))
        y = torch.cat(y, 1)
        cols = None if self.hidden == self.c_ else torch.as_tensor(self._cols(), device=y.device)
        return pad_channels(conv_rows(self.cv2, y, self.out_channels(self.active), cols), self.full_channels())


REPEAT_MODULES = (
    ElasticMBConvStage,
    MBConvStage,
    ElasticMBottleneckCSP,
    MBottleneckCSP,
    ElasticC2f,
    MC2f,
)  # take (c1, c2, n, ...): parse_model inserts n
YAML_MODULES = (*REPEAT_MODULES, ElasticConv, ElasticSPPF)  # names usable in YAML rows
