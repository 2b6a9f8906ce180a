"""Reading Ultralytics training run directories (runs/detect/<name>): is the run finished, and what did it score."""

import csv
from pathlib import Path


def train_done(run_dir):
    """True when `run_dir` holds a finished training: Ultralytics drops the optimizer state from the final last.pt."""
    import torch

    last = Path(run_dir) / "weights" / "last.pt"
    return last.is_file() and torch.load(last, map_location="cpu", weights_only=False).get("optimizer") is None


def final_metrics(run_dir):
    """(mAP50-95, mAP50) of the last epoch in `run_dir/results.csv`."""
    with open(Path(run_dir) / "results.csv") as f:
        last = {k.strip(): v for k, v in list(csv.DictReader(f))[-1].items()}
    return float(last["metrics/mAP50-95(B)"]), float(last["metrics/mAP50(B)"])
