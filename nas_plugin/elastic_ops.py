"""Weight-sharing primitives (once-for-all style) and the activation registry.

An elastic op owns its weights at the largest size and runs a slice of them: leading channels for a smaller width,
the centre of the kernel for a smaller kernel. `inherit_state` applies the same rule to copy those slices into a
static module, so extraction and the elastic forward cannot disagree about which weights a subnet owns.
"""

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


def _sliced_batch_norm(bn, x):
    """BatchNorm over the leading `x.shape[1]` channels of `bn`; running stats update in place through the views."""
    c = x.shape[1]
    if c == bn.num_features:
        return bn(x)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative average, as nn.BatchNorm2d does (used by BN recalibration)
            momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(
        x,
        bn.running_mean[:c],
        bn.running_var[:c],
        bn.weight[:c],
        bn.bias[:c],
        bn.training or not bn.track_running_stats,
        momentum,
        bn.eps,
    )


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

    def forward(self, x, c2, k=None):
        c1 = x.shape[1]
        w = centre_crop(
            self.conv.weight[:c2] if self.depthwise else self.conv.weight[:c2, :c1], k or self.conv.kernel_size[0]
        )
        y = F.conv2d(x, w, None, self.conv.stride, w.shape[-1] // 2, 1, c1 if self.depthwise else 1)
        return _sliced_batch_norm(self.bn, y)


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


def inherit_state(static, elastic):
    """Load into `static` the weights it inherits from `elastic` (leading channels, centre of kernels, first blocks).

    Every key of the static module must exist in the elastic one and be no larger in any dimension; dims 2 and 3
    of 4-D tensors are kernel dims (centre-cropped), all other dims take leading entries.
    """
    source = elastic.state_dict()
    state = {}
    for key, target in static.state_dict().items():
        if key not in source:
            raise NASError(f"cannot inherit {key!r}: the supernet layer has no such weight.")
        w = source[key]
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
    "inherit_state",
    "make_act",
    "se_channels",
)
