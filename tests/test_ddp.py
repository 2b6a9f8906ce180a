"""Multi-GPU supernet training without GPUs: what Ultralytics' DDP launch hands its worker processes, and what each
rank then trains. `yolo train ... device=0,1` pickles the trainer (class, args, model, callbacks) with cloudpickle
(`ultralytics.utils.dist.generate_ddp_file`) and every rank rebuilds it from that file in a fresh interpreter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY_SUPERNET

WORKER = """
import json, os, sys
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.patches import torch_load
from ultralytics.utils.torch_utils import ModelEMA
from nas_plugin.supernet import active_arch

state = torch_load(sys.argv[1], map_location="cpu")  # as the generated DDP script does
cfg = DEFAULT_CFG_DICT.copy()
cfg.update(save_dir="")
trainer = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
trainer.model = state["model"]
trainer.set_model_attributes()
# what BaseTrainer._setup_train leaves for the callbacks (the DDP wrap itself needs GPUs)
trainer.ema, trainer.epochs, trainer.start_epoch, trainer.accumulate = ModelEMA(trainer.model), 2, 0, 3
trainer.train_loader = [None] * 5
trainer.run_callbacks("on_pretrain_routine_end")
seen = []
for epoch in range(trainer.epochs):
    trainer.epoch = epoch
    trainer.run_callbacks("on_train_epoch_start")
    for _ in trainer.train_loader:
        trainer.run_callbacks("on_train_batch_start")
        seen.append(active_arch(trainer.model))
        trainer.run_callbacks("on_train_batch_end")
    if os.environ["RANK"] != "0":  # only rank 0 recalibrates BN and validates: on the others this is a no-op
        trainer.run_callbacks("on_train_epoch_end")
callbacks = {e: [f"{f.__module__}.{f.__name__}" for f in fs] for e, fs in trainer.callbacks.items()}
print("RESULT " + json.dumps({"seen": seen, "callbacks": callbacks}))
"""


@pytest.fixture
def ddp_state(tiny_data, tmp_path):
    """The file Ultralytics writes for its DDP workers, for a supernet trained through `YOLO(...).train()`."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.dist import generate_ddp_file

    cfg = tmp_path / "tiny-supernet.yaml"
    cfg.write_text(TINY_SUPERNET.format(nc=6))
    overrides = dict(
        model=str(cfg),
        data=str(tiny_data),
        epochs=2,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        seed=3,
        project=str(tmp_path),
        name="ddp",
        plots=False,
    )
    trainer = DetectionTrainer(overrides=overrides)
    trainer.model = trainer.get_model(cfg=YOLO(cfg).model.yaml)  # as Model.train attaches it before the launch
    script = Path(generate_ddp_file(trainer))
    yield script.with_suffix(".pt")
    script.unlink(missing_ok=True)
    script.with_suffix(".pt").unlink(missing_ok=True)


def _rank(state, rank, cwd):
    env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(state)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_ddp_workers_get_the_plugin_callbacks_and_every_rank_trains_the_same_subnets(ddp_state, tmp_path):
    from nas_plugin import space as S
    from nas_plugin.supernet import load_supernet, space_from_model
    from nas_plugin.training import CALLBACKS, parse_nas_config, sample

    ranks = [_rank(ddp_state, r, tmp_path) for r in (0, 1)]
    for got in ranks:  # the pickled callbacks, each plugin callback once (the worker's start-up hook adds no copy)
        for event, fn in CALLBACKS.items():
            assert got["callbacks"][event].count(f"{fn.__module__}.{fn.__name__}") == 1, (event, got["callbacks"])
    assert ranks[0]["seen"] == ranks[1]["seen"]  # both ranks train the same subnet on every batch

    cfg_path = tmp_path / "tiny-supernet.yaml"
    space = space_from_model(load_supernet(cfg_path))
    cfg = parse_nas_config({}, space=space)
    expected = [sample(space, cfg, 3, e, i, 5, 2)[0][1] for e in range(2) for i in range(5)]
    assert ranks[0]["seen"] == expected  # and it is the sampler's sequence for the run's seed
    assert S.max_arch(space) in expected and S.min_arch(space) in expected  # after the warm-up, the sandwich
