"""Weight-sharing primitives (once-for-all style) and the activation registry.

An elastic op owns its weights at the largest size and runs a slice of them: leading channels for a smaller width,
the centre of the kernel for a smaller kernel. `inherit_state` applies the same rule to copy those slices into a
static module, so extraction and the elastic forward cannot disagree about which weights a subnet owns.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NASError
from .integration import make_divisible

ACTIVATIONS = {  # name -> factory; names are what YAMLs and arch JSON use
    "relu": nn.ReLU,
    "leakyrelu": lambda: nn.LeakyReLU(0.1),
    "mish": nn.Mish,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
}


def make_act(name):
    """Return a fresh activation module for a registry name."""
    if name not in ACTIVATIONS:
        raise NASError(f"activation {name!r} is not allowed; choose from {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


def se_channels(c):
    """Squeeze-excite bottleneck width for `c` channels (MobileNetV3: a quarter, rounded up to 8)."""
    return make_divisible(c // 4, 8)


class ActSwitch(nn.Module):
    """An activation chosen at run time from a fixed set (weights are unaffected, so switching is free)."""

    def __init__(self, names):
        super().__init__()
        self.acts = nn.ModuleDict({n: make_act(n) for n in names})
        self.name = list(names)[-1]

    def forward(self, x):
        return self.acts[self.name](x)


def sliced_batch_norm(bn, x, rows=None):
    """BatchNorm over channels `rows` of `bn` (a LongTensor; default the leading `x.shape[1]`); running stats are
    updated in place (leading channels are views; picked rows are written back)."""
    c = x.shape[1]
    if rows is None and c == bn.num_features:
        return bn(x)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    training = bn.training and bn.track_running_stats
    if training:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative average, as nn.BatchNorm2d does (used by BN recalibration)
            momentum = 1.0 / float(bn.num_batches_tracked)
    pick = (lambda t: t[:c]) if rows is None else (lambda t: t[rows])
    mean, var = pick(bn.running_mean), pick(bn.running_var)
    y = F.batch_norm(
        x, mean, var, pick(bn.weight), pick(bn.bias), bn.training or not bn.track_running_stats, momentum, bn.eps
    )
    if training and rows is not None:
        # through .data: another subnet's BatchNorm in the same graph (same_batch) saved these buffers for backward,
        # and an in-place write would fail its version check (training-mode backward does not read them)
        bn.running_mean.data[rows], bn.running_var.data[rows] = mean, var
    return y


def pad_channels(y, c):
    """`y` zero-padded to `c` channels: a narrower output keeps the supernet's full width for the layers after it."""
    return F.pad(y, (0, 0, 0, 0, 0, c - y.shape[1])) if y.shape[1] < c else y


def conv_rows(m, x, rows, cols=None):
    """An Ultralytics `Conv` (conv, bn or fused bias, act) computing only output channels `rows` (an int: the leading
    ones; or a LongTensor) from input channels `cols` (a LongTensor) or the leading `x.shape[1]`."""
    pick = (lambda t: t[:rows]) if isinstance(rows, int) else (lambda t: t[rows])
    conv = m.conv
    w = pick(conv.weight)
    w = w[:, : x.shape[1]] if cols is None else w[:, cols]
    y = F.conv2d(x, w, None if conv.bias is None else pick(conv.bias), conv.stride, conv.padding, conv.dilation)
    if hasattr(m, "bn"):
        y = sliced_batch_norm(m.bn, y, None if isinstance(rows, int) else rows)
    return m.act(y)


def narrow_branch(branch, c, x):
    """A dense Detect branch (Conv, Conv, Conv2d) at hidden width `c`: what a Detect built for narrower inputs runs."""
    y = conv_rows(branch[1], conv_rows(branch[0], x, c), c)
    last = branch[2]
    return F.conv2d(y, last.weight[:, :c], last.bias)


def centre_crop(w, k):
    """The central k x k window of a (..., K, K) kernel."""
    off = (w.shape[-1] - k) // 2
    return w[..., off : off + k, off : off + k] if off else w


class ElasticConvBN(nn.Module):
    """Conv2d (no bias) + BatchNorm2d with elastic input/output width and kernel; names match Ultralytics `Conv`."""

    def __init__(self, c1, c2, k, s=1, depthwise=False):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=c1 if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.depthwise = depthwise

    def forward(self, x, c2, k=None, cols=None):
        """Output channels [:c2] at kernel k, reading input channels `cols` (a LongTensor) or the leading ones."""
        c1 = x.shape[1]
        w = self.conv.weight[:c2]
        if not self.depthwise:
            w = w[:, :c1] if cols is None else w[:, cols]
        w = centre_crop(w, k or self.conv.kernel_size[0])
        y = F.conv2d(x, w, None, self.conv.stride, w.shape[-1] // 2, 1, c1 if self.depthwise else 1)
        return sliced_batch_norm(self.bn, y)


class ElasticSE(nn.Module):
    """MobileNetV3 squeeze-excite whose width follows its input; names match `SqueezeExcite`."""

    def __init__(self, c):
        super().__init__()
        r = se_channels(c)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)

    def forward(self, x):
        c = x.shape[1]
        r = se_channels(c)
        s = F.relu(F.conv2d(x.mean((2, 3), keepdim=True), self.fc1.weight[:r, :c], self.fc1.bias[:r]))
        return x * F.hardsigmoid(F.conv2d(s, self.fc2.weight[:c, :r], self.fc2.bias[:c]))


class SqueezeExcite(nn.Module):
    """Static MobileNetV3 squeeze-excite: global pool -> 1x1 reduce -> ReLU -> 1x1 expand -> hard-sigmoid gate."""

    def __init__(self, c):
        super().__init__()
        r = se_channels(c)
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


def inherit_state(static, elastic, gathers=None):
    """Load into `static` the weights it inherits from `elastic` (leading channels, centre of kernels, first blocks).

    Every key of the static module must exist in the elastic one and be no larger in any dimension; dims 2 and 3
    of 4-D tensors are kernel dims (centre-cropped), all other dims take leading entries, except where `gathers`
    ({key: {dim: indices}}) names the entries to take (channels that are not leading, e.g. after a Concat).
    """
    source = elastic.state_dict()
    state = {}
    for key, target in static.state_dict().items():
        if key not in source:
            raise NASError(f"cannot inherit {key!r}: the supernet layer has no such weight.")
        w = source[key]
        for dim, index in (gathers or {}).get(key, {}).items():
            w = w.index_select(dim, torch.as_tensor(index, dtype=torch.long))
        if w.dim() != target.dim() or any(t > s for t, s in zip(target.shape, w.shape)):
            raise NASError(f"cannot inherit {key!r}: shape {tuple(target.shape)} does not fit in {tuple(w.shape)}.")
        if w.dim() == 4:
            w = centre_crop(w[: target.shape[0], : target.shape[1]], target.shape[-1])
        elif w.dim() >= 1:
            w = w[tuple(slice(0, n) for n in target.shape)]
        state[key] = w.clone()
    static.load_state_dict(state)
    return static


__all__ = (
    "ACTIVATIONS",
    "ActSwitch",
    "ElasticConvBN",
    "ElasticSE",
    "SqueezeExcite",
    "centre_crop",
    "conv_rows",
    "inherit_state",
    "make_act",
    "narrow_branch",
    "pad_channels",
    "se_channels",
    "sliced_batch_norm",
)
