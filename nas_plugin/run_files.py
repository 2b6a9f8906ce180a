"""Ultralytics training run directories (runs/detect/<name>): is the run finished, how to finish it, what it scored."""

import csv
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

YOLO_CLI = str(Path(sys.executable).with_name("yolo"))  # the stock CLI of this environment


def train_done(run_dir):
    """True when `run_dir` holds a finished training: Ultralytics drops the optimizer state from the final last.pt."""
    from .integration import load_checkpoint

    last = Path(run_dir) / "weights" / "last.pt"
    return last.is_file() and load_checkpoint(last).get("optimizer") is None


def train_command(yolo, run_dir, model, data, **args):
    """The stock `yolo train` command that brings `run_dir` to a finished training: None when it is finished, a
    `resume` of its last.pt when an earlier run was interrupted, else a fresh run of `model` with `args`."""
    run_dir = Path(run_dir)
    last = run_dir / "weights" / "last.pt"
    if train_done(run_dir):
        return None
    if last.is_file():
        return [str(yolo), "train", "resume", f"model={last}"]
    args = {"data": data, **args, "project": run_dir.parent, "name": run_dir.name, "exist_ok": True}
    return [str(yolo), "train", f"model={model}", *(f"{k}={v}" for k, v in args.items())]


TRAINING_STACK = ("torch", "torchvision", "ultralytics", "numpy", "opencv-python", "openvino")


def stack_versions():
    """{package: version} of what trains and times here: benchmark results record it, since the same command and
    seed have scored differently in sessions on fresh installs."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in TRAINING_STACK:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


BENCHMARK_SETS = ("data", "model", "project", "name", "exist_ok", "epochs", "seed", "imgsz", "batch")
DEFAULT_EPOCHS = 30  # benchmark trainings this long keep the run names they had before their length was varied


def parse_train_args(text, flag="--train-args", reserved=BENCHMARK_SETS, who="the benchmark"):
    """{key: value} from a benchmark's `--train-args "optimizer=AdamW lr0=0.002"`: stock `yolo train` arguments added to
    the trainings it runs, except those it sets itself (`reserved`); `flag` and `who` name the option and its owner in
    errors."""
    from .errors import NASError

    pairs = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise NASError(f"{flag} takes key=value pairs separated by spaces, got {item!r}.")
        if key in reserved:
            raise NASError(f"{flag} cannot set {key!r}: {who} sets {', '.join(reserved)} itself.")
        pairs[key] = value
    return pairs


def train_args_tag(train_args):
    """Names the run directories of trainings with extra `train_args`, so runs at other settings are not reused."""
    return re.sub(r"[^\w.-]", "_", "".join(f"_{k}-{v}" for k, v in train_args.items()))


def run_name(stem, epochs, train_args, seed):
    """A benchmark training's run directory name: its length (where not `DEFAULT_EPOCHS`), its extra `yolo train`
    arguments and its seed are in it, so a run of another length, setting or seed is never reused for it."""
    length = "" if epochs == DEFAULT_EPOCHS else f"_{epochs}ep"
    return f"{stem}{length}{train_args_tag(train_args)}_seed{seed}"


def _chain(commands):
    return commands if isinstance(commands, tuple) else (commands,)


def pending(commands):
    """Names of the `run_trainings` commands with a training left to run."""
    return [name for name, chain in commands.items() if any(_chain(chain))]


def run_trainings(commands, jobs=2):
    """Run {name: command from `train_command`} `jobs` at a time (None: already finished), each logging to
    `<run dir>.log`; a tuple of commands is a chain run in order in one slot (a training that starts from the one
    before it). A failing training raises SystemExit naming it and its log. Ultralytics trains on one core of a
    small CPU machine, so two at a time use a 2-core machine fully."""

    def one(item):
        name, chain = item
        for cmd in _chain(chain):
            if cmd is None:
                continue
            log = Path(f"{_run_dir(cmd)}.log")
            log.parent.mkdir(parents=True, exist_ok=True)
            t = time.time()
            with open(log, "a") as f:
                code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
            if code:
                raise SystemExit(f"training {name} failed (exit {code}); see {log}")
            print(f"  {time.time() - t:7.1f} s  {name}", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, commands.items()))


def _run_dir(cmd):
    """The run directory a `train_command` command writes."""
    args = dict(c.split("=", 1) for c in cmd if "=" in c)
    if "resume" in cmd:
        return Path(args["model"]).parents[1]
    return Path(args["project"]) / args["name"]


def train_seconds(run_dir):
    """Training wall time of `run_dir`: the sum of its epochs' times from results.csv, whose `time` column counts from
    each (re)start, so a resumed run's epochs add up too."""
    total, last = 0.0, 0.0
    with open(Path(run_dir) / "results.csv") as f:
        for row in csv.DictReader(f):
            t = float(row["time"])
            total += t - last if t >= last else t
            last = t
    return total


def final_metrics(run_dir):
    """(mAP50-95, mAP50) of the last epoch in `run_dir/results.csv`."""
    with open(Path(run_dir) / "results.csv") as f:
        last = {k.strip(): v for k, v in list(csv.DictReader(f))[-1].items()}
    return float(last["metrics/mAP50-95(B)"]), float(last["metrics/mAP50(B)"])


def split_metrics(run_dir, data, split, imgsz, batch=32):
    """(mAP50-95, mAP50) of `run_dir`'s last.pt (the epoch `final_metrics` reads) on another split of `data`, such as a
    test split that no training, search or checkpoint choice has seen, by the stock validator on the CPU; kept in
    `<run_dir>/<split>_metrics.json` so a re-run does not validate again."""
    from .files import write_json
    from .integration import validate, yolo_model

    cache = Path(run_dir) / f"{split}_metrics.json"
    if not cache.is_file():
        model = yolo_model(Path(run_dir) / "weights" / "last.pt").float()
        with tempfile.TemporaryDirectory() as tmp:
            map50, map50_95 = validate(model, data, imgsz, batch, "cpu", Path(tmp), split=split)
        write_json(cache, {"split": split, "weights": "last.pt", "map50_95": map50_95, "map50": map50})
    found = json.loads(cache.read_text())
    return found["map50_95"], found["map50"]
