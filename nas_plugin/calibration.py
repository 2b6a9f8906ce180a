"""BatchNorm recalibration for one subnet of a supernet, on training images only.

During supernet training every subnet updates the shared BatchNorm statistics, so the running stats match no single
subnet. Before a subnet is evaluated its statistics are re-estimated: reset, then a cumulative average over a fixed
set of training images (letterboxed, no augmentation). Validation images are never used for this.
"""

import random
from pathlib import Path

import torch
from torch import nn

from . import integration
from .errors import NASError


def check_dataset(data_yaml, model):
    """The checked data dict of `data_yaml`; refuses a missing file or a class count that differs from `model`'s."""
    if not Path(str(data_yaml)).is_file():
        raise NASError(f"dataset YAML {str(data_yaml)!r} does not exist.")
    data = integration.check_dataset(data_yaml)
    if data["nc"] != model.yaml["nc"]:
        raise NASError(
            f"dataset {str(data_yaml)!r} has {data['nc']} classes but the model has {model.yaml['nc']}; "
            "use the dataset the supernet was trained on."
        )
    return data


def calibration_batches(data, imgsz, batch=16, n_batches=8, seed=0):
    """`n_batches` image batches (float, 0-1) drawn with `seed` from the train split of a checked data dict.

    `data` is a checked data dict (`check_dataset`, or the trainer's).
    """
    if n_batches < 1 or batch < 1:
        raise NASError(f"calibration needs n_batches >= 1 and batch >= 1, got n_batches={n_batches}, batch={batch}.")
    images = integration.LetterboxedImages(data, "train", imgsz, batch)
    k = min(len(images), n_batches * batch)
    indices = random.Random(seed).sample(range(len(images)), k)
    return [images.batch(indices[j : j + batch]) for j in range(0, k, batch)]


@torch.no_grad()
def recalibrate_bn(model, batches):
    """Re-estimate every BatchNorm's running stats of `model` (its active subnet) from `batches`; returns `model`.

    Only running statistics change (weights and biases do not); the model comes back in eval mode.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    weight = next(model.parameters())  # images follow the model's device and dtype (an EMA may be half on a GPU)
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train()
    try:
        for img in batches:
            model(img.to(weight.device, weight.dtype))
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    return model
