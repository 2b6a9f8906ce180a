"""Supernet training in the stock trainer: config validation, deterministic sampling, CLI run, resume, BN calibration."""

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import SUPERNET_FILE, SUPERNET_YAML, yolo

from nas_plugin import space as S
from nas_plugin.calibration import calibration_batches, recalibrate_bn
from nas_plugin.errors import NASError
from nas_plugin.supernet import set_arch
from nas_plugin.training import cycle, distillation_loss, parse_nas_config, sample


@pytest.mark.parametrize(
    "block, message",
    [
        ({"sampler": "greedy"}, "nas: sampler='greedy' in y.yaml is not allowed; sampler must be one of ['sandwich', 'uniform']"),
        ({"num_random": -1}, "nas: num_random=-1 in y.yaml is not allowed; num_random must be an integer >= 0"),
        ({"distill": -0.5}, "nas: distill=-0.5 in y.yaml is not allowed; distill must be a number >= 0"),
        ({"samplr": "uniform"}, "unknown nas: option(s) ['samplr'] in y.yaml; allowed options are"),
    ],
)
def test_bad_nas_options_are_named(block, message):
    with pytest.raises(NASError) as e:
        parse_nas_config(block, "y.yaml")
    assert message in str(e.value)


def test_sandwich_cycle_trains_max_min_and_n_random(space):
    cfg = parse_nas_config({"num_random": 2})
    kinds = [sample(space, cfg, 0, 0, i, 10)[0] for i in range(8)]
    assert kinds == ["max", "min", "random", "random"] * 2
    assert sample(space, cfg, 0, 0, 0, 10)[1] == S.max_arch(space) and sample(space, cfg, 0, 0, 1, 10)[1] == S.min_arch(space)
    assert cycle(parse_nas_config({"sampler": "uniform"})) == ["random"]


def test_two_samplers_with_the_same_seed_agree(space):
    cfg = parse_nas_config({"sampler": "uniform"})
    run_a = [sample(space, cfg, 7, e, i, 5)[1] for e in range(3) for i in range(5)]
    run_b = [sample(space, cfg, 7, e, i, 5)[1] for e in range(3) for i in range(5)]
    other_seed = [sample(space, cfg, 8, e, i, 5)[1] for e in range(3) for i in range(5)]
    assert run_a == run_b != other_seed
    assert len({S.arch_key(a) for a in run_a}) == len(run_a)  # a new subnet every step


def test_distillation_loss_is_smallest_when_student_matches_teacher():
    g = torch.Generator().manual_seed(0)
    teacher = {"boxes": torch.randn(2, 64, 30, generator=g), "scores": torch.randn(2, 6, 30, generator=g)}
    other = {"boxes": torch.randn(2, 64, 30, generator=g), "scores": torch.randn(2, 6, 30, generator=g)}
    assert distillation_loss(teacher, teacher) < distillation_loss(other, teacher)


def test_bn_recalibration_uses_train_images_and_changes_only_running_stats(supernet, space, tiny_data):
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(tiny_data))
    data["val"] = str(tiny_data.parent / "no-such-val-dir")  # never read
    batches = calibration_batches(data, 64, batch=4, n_batches=2, seed=0)
    assert [tuple(b.shape) for b in batches] == [(4, 3, 64, 64)] * 2
    assert torch.equal(batches[0], calibration_batches(data, 64, batch=4, n_batches=2, seed=0)[0])
    set_arch(supernet, S.min_arch(space))
    params = {k: v.clone() for k, v in supernet.named_parameters()}
    bn = supernet.model[1].blocks[0].expand.bn
    before = bn.running_mean.clone()
    recalibrate_bn(supernet, batches)
    after = bn.running_mean.clone()
    assert not supernet.training
    assert all(torch.equal(v, params[k]) for k, v in supernet.named_parameters())
    assert not torch.equal(before[:48], after[:48])
    recalibrate_bn(supernet, batches)
    torch.testing.assert_close(bn.running_mean, after)  # a reset + average, not a running blend


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _train_args(data, project, name, epochs, model=SUPERNET_YAML):
    return ["train", f"model={model}", f"data={data}", f"epochs={epochs}", "imgsz=64", "batch=4", "workers=0",
            "device=cpu", "plots=False", f"project={project}", f"name={name}", "exist_ok=True"]  # fmt: skip


def test_yolo_train_runs_the_sandwich_with_distillation(tiny_data, tmp_path):
    cfg = tmp_path / "yolov8n-kd-supernet.yaml"
    cfg.write_text(SUPERNET_FILE.read_text().replace("nc: 80", "nas:\n  num_random: 1\n  distill: 0.5\nnc: 80", 1))
    proc = yolo(*_train_args(tiny_data, tmp_path, "kd", 2, cfg), "nbs=12", cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert "nas: sandwich sampler, one subnet per batch cycling ['max', 'min', 'random']" in proc.output
    assert "nas: smallest subnet after BN recalibration" in proc.output
    rows = _rows(tmp_path / "kd" / "nas_epochs.csv")
    kinds = {r["subnet"] for r in rows}
    assert {"max", "min"} <= kinds  # the largest and the smallest subnets were actually trained
    assert all(float(r["kd_loss"]) == 0 for r in rows if r["subnet"] == "max")
    assert all(float(r["kd_loss"]) > 0 for r in rows if r["subnet"] != "max")
    assert all(r["mAP50-95"] != "" for r in rows if r["subnet"] in ("max", "min"))


def test_nas_block_on_a_static_model_is_refused_at_start(supernet, space, tiny_data, tmp_path):
    from nas_plugin.extract import save_subnet

    save_subnet(supernet, S.min_arch(space), tmp_path / "sub")
    cfg = tmp_path / "static.yaml"
    cfg.write_text((tmp_path / "sub" / "model.yaml").read_text() + "nas:\n  sampler: uniform\n")
    proc = yolo(*_train_args(tiny_data, tmp_path, "static", 1, cfg), cwd=tmp_path)
    assert proc.returncode != 0
    assert "has a nas: block but no elastic layers" in proc.output
    assert not (tmp_path / "static" / "weights" / "last.pt").exists()


def test_killed_run_resumes_the_same_subnet_sequence(tiny_data, tmp_path):
    yolo_exe = str(Path(sys.executable).with_name("yolo"))
    full = yolo(*_train_args(tiny_data, tmp_path, "full", 3), cwd=tmp_path)
    assert full.returncode == 0, full.output

    run = tmp_path / "cut"
    proc = subprocess.Popen([yolo_exe, *_train_args(tiny_data, tmp_path, "cut", 3)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run / "nas_epochs.csv").exists() and (run / "weights" / "last.pt").exists():
            proc.send_signal(signal.SIGKILL)  # mid-way through epoch 2
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be interrupted"
    resumed = yolo("train", "resume", f"model={run / 'weights' / 'last.pt'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.output
    seq = [(r["epoch"], r["batch"], r["subnet"], r["arch_code"]) for r in _rows(run / "nas_subnets.csv")]
    assert seq == [(r["epoch"], r["batch"], r["subnet"], r["arch_code"]) for r in _rows(tmp_path / "full" / "nas_subnets.csv")]
    assert [r["epoch"] for r in _rows(run / "nas_epochs.csv")] == [r["epoch"] for r in _rows(tmp_path / "full" / "nas_epochs.csv")]
