"""Accuracy of subnets for the search: extract, recalibrate BN on training images, score with Ultralytics' validator.

Each subnet is evaluated exactly as the file the search writes for it will be: extracted with inherited weights,
BatchNorm statistics re-estimated on a fixed, seeded set of training images, then validated by the stock
`DetectionValidator` with `yolo val`'s defaults (batch 16, conf 0.001, iou 0.7). So `yolo val model=.../model.pt`
reproduces the recorded mAP on the same validation images.
"""

import contextlib
import os
import random
from pathlib import Path

import torch
import yaml

from .calibration import calibration_batches, check_dataset, recalibrate_bn
from .extract import extract
from .files import write_text
from .integration import cache_labels, gflops, is_image, label_path, validate
from .search import CALIB_BATCHES

VAL_BATCH = 16  # `yolo val`'s default: rectangular val batches depend on it, so the mAP does too


def cores():
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@contextlib.contextmanager
def _torch_threads(n):
    """Torch on `n` threads: Ultralytics' validator leaves a core to data-loader workers, which recalibration has
    none of (1.5x faster recalibration on 2 cores than on 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def link_subset(images, out):
    """`out/images` and `out/labels` linking to `images` and their labels: a folder of its own, so Ultralytics'
    label cache for the subset (`out/labels.cache`) is not the val split's, which validations of the subset and of
    the whole split would otherwise rewrite under each other (and search workers crash on). Every worker links the
    same seeded subset: a link already there is kept."""
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(map(Path, images)):
        name = f"{i:06d}_{image.stem}"  # unique even where images in different folders share a name
        label = label_path(image)
        links = [(out / "images" / f"{name}{image.suffix}", image)]
        if label.is_file():
            links.append((out / "labels" / f"{name}.txt", label))
        for link, target in links:
            with contextlib.suppress(FileExistsError):
                link.symlink_to(target.resolve())


class AccuracyEvaluator:
    """`evaluator(archs)` -> one {'map50', 'map50_95', 'params', 'gflops'} per arch, for a whole generation at once."""

    def __init__(
        self,
        supernet,
        data,
        imgsz,
        work_dir,
        calib_batches=CALIB_BATCHES,
        val_images=None,
        seed=0,
        device="cpu",
        threads=None,
    ):
        self.supernet, self.imgsz, self.device = supernet, imgsz, device
        self.threads = threads or cores()  # torch threads for recalibration: a worker of several gets its share
        self.save_dir = Path(work_dir) / "val"  # the validator's own directory: never runs/ in the current directory
        self.data_yaml = str(data)
        checked = check_dataset(data, supernet)
        self.calib = calibration_batches(checked, imgsz, VAL_BATCH, calib_batches, seed)
        self.calib_images = sum(len(b) for b in self.calib)
        self.val_data = self.data_yaml
        self.on_subset = False  # True: ranks on a seeded subset of the val split; the front is re-scored on all
        if val_images:
            files = sorted(str(p) for p in Path(checked["val"]).rglob("*") if is_image(p))
            self.on_subset = val_images < len(files)
        if self.on_subset:
            subset = sorted(random.Random(seed).sample(files, val_images))
            link_subset(subset, Path(work_dir) / "val_subset")
            cfg = {
                "path": str(Path(work_dir).resolve()),
                "train": checked["train"],
                "val": "val_subset/images",
                "names": checked["names"],
            }
            self.val_data = str(Path(work_dir) / "val_subset.yaml")
            write_text(self.val_data, yaml.safe_dump(cfg, sort_keys=False))
            cache_labels(self.val_data)

    def static(self, arch):
        """The subnet as it will be written: extracted, BN recalibrated."""
        return self.recalibrate(extract(self.supernet, arch))

    def recalibrate(self, model):
        """`model` with BatchNorm statistics re-estimated on the calibration batches, on `threads` cores."""
        with _torch_threads(self.threads):
            return recalibrate_bn(model, self.calib)

    def validate(self, model, data=None):
        """(mAP50, mAP50-95) of a static model by the stock validator."""
        return validate(model, data or self.val_data, self.imgsz, VAL_BATCH, self.device, self.save_dir)

    def score(self, model, data=None):
        """{'map50', 'map50_95', 'params', 'gflops'} of a static model, validated on `data` (default: the ranking's)."""
        params = sum(p.numel() for p in model.parameters())  # counted before validation fuses anything
        flops = gflops(model, self.imgsz)
        map50, map50_95 = self.validate(model, data)
        return {"map50": map50, "map50_95": map50_95, "params": params, "gflops": flops}

    def __call__(self, archs):
        return [self.score(self.static(arch)) for arch in archs]


def process_evaluator(supernet, threads, **evaluator_args):
    """The `AccuracyEvaluator` of a worker process that owns `threads` cores: validation (torch's process-wide
    threads) and recalibration both stay on that share, so workers beside each other do not oversubscribe."""
    torch.set_num_threads(threads)
    return AccuracyEvaluator(supernet, threads=threads, **evaluator_args)
