"""Supernet training in the stock trainer: config validation, deterministic sampling, CLI run, resume, BN
calibration."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import CSP_SUPERNET_FILE, SUPERNET_FILE, SUPERNET_YAML, TINY_SUPERNET, yolo
from nas_plugin import space as S
from nas_plugin.calibration import calibration_batches, recalibrate_bn
from nas_plugin.errors import NASError
from nas_plugin.supernet import set_arch
from nas_plugin.training import cycle, distillation_loss, parse_nas_config, phase_at, phase_ends, sample


@pytest.mark.parametrize(
    "block, message",
    [
        (
            {"sampler": "greedy"},
            "nas: sampler='greedy' in y.yaml is not allowed; sampler must be one of ['sandwich', 'uniform']",
        ),
        ({"num_random": -1}, "nas: num_random=-1 in y.yaml is not allowed; num_random must be an integer >= 0"),
        ({"distill": -0.5}, "nas: distill=-0.5 in y.yaml is not allowed; distill must be a finite number >= 0"),
        ({"distill": float("inf")}, "nas: distill=inf in y.yaml is not allowed; distill must be a finite number >= 0"),
        ({"same_batch": 1}, "nas: same_batch=1 in y.yaml is not allowed; same_batch must be true or false"),
        ({"zero_init": "yes"}, "nas: zero_init='yes' in y.yaml is not allowed; zero_init must be true or false"),
        (
            {"init": "last.yaml"},
            "nas: init='last.yaml' in y.yaml is not allowed; init must be a path to a .pt checkpoint",
        ),
        (
            {"phases": [["max", 0.5], ["all", 0.6]]},
            "nas: phases=[['max', 0.5], ['all', 0.6]] in y.yaml is not allowed; "
            "phases must be a list of [name, epoch fraction] pairs: fractions > 0 that sum to 1",
        ),
        ({"phases": [["all", 0.5], ["max", 0.5]]}, "'max' only first, 'all' last"),
        ({"phases": [["max", 0.5], ["kernel", 0.0], ["all", 0.5]]}, "fractions > 0"),
        ({"phases": "max"}, "nas: phases='max' in y.yaml is not allowed"),
        ({"samplr": "uniform"}, "unknown nas: option(s) ['samplr'] in y.yaml; allowed options are"),
        (
            {"band": [1.0, 2.0]},
            "nas: band=[1.0, 2.0] in y.yaml needs lut: a latency band is read off a latency table; give both",
        ),
        ({"lut": "lut.json"}, "nas: lut='lut.json' in y.yaml needs band"),
        (
            {"band": [2.0, 1.0], "lut": "lut.json"},
            "nas: band=[2.0, 1.0] in y.yaml is not allowed; band must be null or [low, high] in ms with 0 <= low < "
            "high",
        ),
        ({"band": [1.0, 2.0], "lut": "lut.csv"}, "lut must be a path to a latency table .json"),
    ],
)
def test_bad_nas_options_are_named(block, message):
    with pytest.raises(NASError) as e:
        parse_nas_config(block, "y.yaml")
    assert message in str(e.value)


def test_nas_block_must_be_a_mapping():
    with pytest.raises(NASError, match=r"nas: in y.yaml must be a mapping of options, got \[1, 2\]"):
        parse_nas_config([1, 2], "y.yaml")


def test_phase_names_are_checked_against_the_space(space):
    with pytest.raises(
        NASError,
        match=(
            r"nas: phases name 'stride' in y.yaml is not allowed; phase names are "
            r"\['max', 'neck', 'all', 'depth', 'width', 'kernel', 'expand', 'act'\]"
        ),
    ):
        parse_nas_config({"phases": [["stride", 0.5], ["all", 0.5]]}, "y.yaml", space)


def test_sandwich_cycle_trains_max_min_and_n_random(space):
    cfg = parse_nas_config({"num_random": 2})
    kinds = [sample(space, cfg, 0, 0, i, 10)[0][0] for i in range(8)]
    assert kinds == ["max", "min", "random", "random"] * 2
    assert sample(space, cfg, 0, 0, 0, 10) == [("max", S.max_arch(space))]
    assert sample(space, cfg, 0, 0, 1, 10) == [("min", S.min_arch(space))]
    assert cycle(parse_nas_config({"sampler": "uniform"})) == ["random"]


def test_same_batch_trains_the_whole_cycle_on_every_batch(space):
    cfg = parse_nas_config({"num_random": 2, "same_batch": True})
    batch = sample(space, cfg, 0, 0, 3, 10)
    assert [k for k, _ in batch] == ["max", "min", "random", "random"]
    assert batch[0][1] == S.max_arch(space) and batch[1][1] == S.min_arch(space)
    assert batch[2][1] != batch[3][1] and batch != sample(space, cfg, 0, 0, 4, 10)


def test_phases_switch_at_their_epochs_and_widen_the_space(space):
    cfg = parse_nas_config(
        {"phases": [["max", 0.3], ["kernel", 0.2], ["depth", 0.2], ["all", 0.3]], "same_batch": True}, "y", space
    )
    assert phase_ends(cfg, 10) == [3, 5, 7, 10]
    assert [phase_at(cfg, e, 10) for e in range(10)] == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    largest = S.max_arch(space)
    assert sample(space, cfg, 0, 2, 0, 5, epochs=10) == [("max", largest)]  # warm-up: only the largest, once
    kernel_phase = [a for e in (3, 4) for i in range(5) for _, a in sample(space, cfg, 0, e, i, 5, epochs=10)]
    for arch in kernel_phase:  # only kernels vary, in the backbone and the neck
        for section in ("backbone", "head"):
            for u, big in zip(arch[section], largest[section]):
                assert {k: v for k, v in u.items() if k != "kernel"} == {k: v for k, v in big.items() if k != "kernel"}
    assert {k for a in kernel_phase for u in a["backbone"] if "kernel" in u for k in u["kernel"]} == {3, 5, 7}
    assert {u["kernel"] for a in kernel_phase for u in a["head"] if "kernel" in u} == {3, 5}
    depth_phase = [a for e in (5, 6) for i in range(5) for _, a in sample(space, cfg, 0, e, i, 5, epochs=10)]
    assert {u["depth"] for a in depth_phase for u in a["backbone"] if "kernel" in u} == {2, 3, 4}
    assert {u["width"] for a in depth_phase for s in ("backbone", "head") for u in a[s]} == {1.0}  # width not yet
    assert {u["act"] for a in depth_phase for u in a["head"] if "act" in u} == {largest["head"][0]["act"]}
    assert sample(space, cfg, 0, 9, 0, 5, epochs=10)[1] == ("min", S.min_arch(space))  # the last phase is the space


def test_an_anchor_takes_the_largest_subnets_place_and_phases_shrink_around_it(space):
    anchor = S.random_arch(space, seed=5)
    for _, _, u in S.units(anchor):  # one value per unit, so the fields a phase fixes have one choice
        u.update({k: [v[0]] * u["depth"] for k, v in u.items() if isinstance(v, list)})
    cfg = parse_nas_config({"anchor": "a.json", "phases": [["max", 0.3], ["kernel", 0.2], ["all", 0.5]]}, "y", space)
    assert cycle(cfg) == ["anchor", "min", "random", "random"]
    warm_up = [b for e in range(3) for i in range(4) for b in sample(space, cfg, 0, e, i, 4, 10, anchor=anchor)]
    assert warm_up == [("anchor", anchor)] * 12  # the warm-up trains the anchor alone
    kernel_phase = [b for e in (3, 4) for i in range(4) for b in sample(space, cfg, 0, e, i, 4, 10, anchor=anchor)]
    assert [k for k, _ in kernel_phase] == ["anchor", "min", "random", "random"] * 2
    for _, arch in kernel_phase:  # only kernels vary; every other choice stays the anchor's
        for section in ("backbone", "head"):
            for u, a in zip(arch[section], anchor[section]):
                assert {k: v for k, v in u.items() if k != "kernel"} == {k: v for k, v in a.items() if k != "kernel"}
    assert len({S.arch_key(a) for _, a in kernel_phase}) > 2
    assert sample(space, cfg, 0, 9, 0, 4, 10, anchor=anchor) == [("anchor", anchor)]
    assert sample(space, cfg, 0, 9, 1, 4, 10, anchor=anchor) == [("min", S.min_arch(space))]  # the last is the space
    for bad in ("random", 3):
        with pytest.raises(NASError, match=f"nas: anchor={bad!r} in y is not allowed; anchor must be null"):
            parse_nas_config({"anchor": bad}, "y")


def test_yolo_train_with_an_anchor_warms_up_on_the_stock_arch_and_refuses_an_unknown_name(tiny_data, tmp_path):
    from nas_plugin.supernet import load_supernet, named_archs, space_from_model

    recipe = "  phases: [[max, 0.4], [depth, 0.1], [kernel, 0.05], [expand, 0.05], [act, 0.1], [all, 0.3]]"
    text = CSP_SUPERNET_FILE.read_text()
    assert recipe in text

    def train(name, anchor):
        cfg = tmp_path / f"yolov8n-{name}-supernet.yaml"
        cfg.write_text(text.replace(recipe, f"  anchor: {anchor}\n  phases: [[max, 0.3333], [all, 0.6667]]"))
        return cfg, yolo(*_train_args(tiny_data, tmp_path, name, 3, cfg), cwd=tmp_path)

    cfg, proc = train("anchored", "yolov8n")
    assert proc.returncode == 0, proc.output
    assert "one subnet per batch cycling ['anchor', 'min', 'random', 'random']" in proc.output
    model = load_supernet(cfg)
    space = space_from_model(model)
    code = "".join(map(str, S.encode(space, named_archs(model)["yolov8n"])))
    subnets = _rows(tmp_path / "anchored" / "nas_subnets.csv")
    assert {(r["subnet"], r["arch_code"]) for r in subnets if r["epoch"] == "1"} == {("anchor", code)}
    assert {r["subnet"] for r in subnets if r["epoch"] != "1"} == {"anchor", "min", "random"}
    assert all(r["arch_code"] == code for r in subnets if r["subnet"] == "anchor")
    epochs = _rows(tmp_path / "anchored" / "nas_epochs.csv")
    assert all(r["mAP50-95"] != "" for r in epochs if r["subnet"] in ("anchor", "min"))

    cfg, proc = train("unknown", "yolov9n")
    assert proc.returncode != 0 and not (tmp_path / "unknown" / "weights" / "last.pt").exists()
    assert (
        f"nas: anchor='yolov9n' in {cfg}: arch 'yolov9n' is neither 'max', 'min', 'random', 'yolov8', 'yolov8n' nor "
        "an existing JSON file."
    ) in proc.output


def test_band_sampler_draws_every_subnet_but_the_largest_inside_the_band(space):
    def latency(arch):  # a stand-in for a table: grows with every choice's index
        return float(sum(S.encode(space, arch)))

    top = latency(S.max_arch(space))
    band = [0.3 * top, 0.4 * top]
    cfg = parse_nas_config({"band": band, "lut": "lut.json", "phases": [["kernel", 0.5], ["all", 0.5]]}, "y", space)
    assert cycle(cfg) == ["max", "band", "band", "band"]
    drawn = [sample(space, cfg, 0, 1, i, 8, epochs=2, latency=latency) for i in range(8)]
    assert [b[0][0] for b in drawn] == ["max", "band", "band", "band"] * 2
    bands = [a for b in drawn for k, a in b if k == "band"]
    assert all(band[0] <= latency(a) <= band[1] for a in bands) and len({S.arch_key(a) for a in bands}) == 6
    # the kernel phase's smallest subnet is slower than the band: plain random draws there, as without a band
    plain = parse_nas_config({"phases": [["kernel", 0.5], ["all", 0.5]]}, "y", space)
    plain_random = [sample(space, plain, 0, 0, i, 8, 2)[0][1] for i in (2, 3)]  # the sandwich's without a band
    assert [sample(space, cfg, 0, 0, i, 8, 2, latency)[0][1] for i in (2, 3)] == plain_random


def test_two_samplers_with_the_same_seed_agree(space):
    cfg = parse_nas_config({"sampler": "uniform"})
    run_a = [sample(space, cfg, 7, e, i, 5)[0][1] for e in range(3) for i in range(5)]
    run_b = [sample(space, cfg, 7, e, i, 5)[0][1] for e in range(3) for i in range(5)]
    other_seed = [sample(space, cfg, 8, e, i, 5)[0][1] for e in range(3) for i in range(5)]
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
    return [
        "train",
        f"model={model}",
        f"data={data}",
        f"epochs={epochs}",
        "imgsz=64",
        "batch=4",
        "workers=0",
        "device=cpu",
        "plots=False",
        f"project={project}",
        f"name={name}",
        "exist_ok=True",
    ]


def test_yolo_train_runs_the_sandwich_with_distillation(tiny_data, tmp_path):
    cfg = tmp_path / "yolov8n-kd-supernet.yaml"
    cfg.write_text(
        SUPERNET_FILE.read_text().replace(
            "nc: 80", "nas:\n  num_random: 1\n  distill: 0.5\n  phases: [[all, 1.0]]\nnc: 80", 1
        )
    )
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


def test_yolo_train_with_a_latency_band_trains_the_band_and_refuses_one_no_subnet_reaches(tiny_data, tmp_path):
    from nas_plugin.backends import get_backend
    from nas_plugin.lut import predict_us
    from nas_plugin.lut_build import build_lut
    from nas_plugin.supernet import load_supernet, space_from_model

    base = tmp_path / "tiny-supernet.yaml"
    base.write_text(TINY_SUPERNET.format(nc=6))
    model = load_supernet(base)
    space = space_from_model(model)
    lut_path = tmp_path / "lut.json"
    lut = build_lut(model, 64, get_backend("openvino"), lut_path, calib_subnets=0, rounds=1)

    def ms(arch):
        return predict_us(lut, space, arch) / 1000

    low, high = ms(S.min_arch(space)), ms(S.max_arch(space))
    band = [round(low + (high - low) / 3, 4), round(low + 2 * (high - low) / 3, 4)]

    def train(name, b):
        cfg = tmp_path / f"tiny-{name}-supernet.yaml"
        cfg.write_text(f"nas:\n  lut: {lut_path}\n  band: {b}\n  phases: [[all, 1.0]]\n" + base.read_text())
        return cfg, yolo(*_train_args(tiny_data, tmp_path, name, 2, cfg), cwd=tmp_path)

    _, proc = train("band", band)
    assert proc.returncode == 0, proc.output
    assert "one subnet per batch cycling ['max', 'band', 'band', 'band']" in proc.output
    rows = _rows(tmp_path / "band" / "nas_subnets.csv")
    trained = [S.decode(space, [int(c) for c in r["arch_code"]]) for r in rows if r["subnet"] == "band"]
    assert len(trained) == 3 and all(band[0] <= ms(a) <= band[1] for a in trained)

    far = [round(2 * high, 4), round(3 * high, 4)]
    cfg, proc = train("far", far)
    assert proc.returncode != 0 and not (tmp_path / "far" / "weights" / "last.pt").exists()
    assert (
        f"nas: band={far!r} in {cfg} holds no subnet: by '{lut_path}' the subnets run from "
        f"{low:.3f} to {high:.3f} ms; give a band that overlaps that range."
    ) in proc.output


def test_nas_block_on_a_static_model_is_refused_at_start(supernet, space, tiny_data, tmp_path):
    from nas_plugin.extract import save_subnet

    save_subnet(supernet, S.min_arch(space), tmp_path / "sub")
    cfg = tmp_path / "static.yaml"
    cfg.write_text((tmp_path / "sub" / "model.yaml").read_text() + "nas:\n  sampler: uniform\n")
    proc = yolo(*_train_args(tiny_data, tmp_path, "static", 1, cfg), cwd=tmp_path)
    assert proc.returncode != 0
    assert "has a nas: block but no elastic layers" in proc.output
    assert not (tmp_path / "static" / "weights" / "last.pt").exists()


def test_compile_is_refused_for_a_supernet_before_the_first_batch(tiny_data, tmp_path):
    cfg = tmp_path / "tiny-supernet.yaml"
    cfg.write_text(TINY_SUPERNET.format(nc=6))
    proc = yolo(*_train_args(tiny_data, tmp_path, "compiled", 1, cfg), "compile=True", cwd=tmp_path)
    assert proc.returncode != 0
    assert "compile=True cannot train a supernet: the active subnet changes every batch" in proc.output
    assert not (tmp_path / "compiled" / "weights" / "last.pt").exists()


def test_a_bad_nas_block_stops_yolo_train_before_the_dataset_scan(tiny_data, tmp_path):
    cfg = tmp_path / "yolov8n-bad-supernet.yaml"
    cfg.write_text(SUPERNET_FILE.read_text().replace("nc: 80", "nas:\n  distill: -1\nnc: 80", 1))
    proc = yolo(*_train_args(tiny_data, tmp_path, "bad", 1, cfg), cwd=tmp_path)
    assert proc.returncode != 0 and "Scanning" not in proc.output
    assert (
        proc.output.strip()
        .splitlines()[-1]
        .endswith("nas: distill=-1 in yolov8n-bad-supernet.yaml is not allowed; distill must be a finite number >= 0.")
    )


RECIPE = (
    "nas:\n  same_batch: true\n  num_random: 1\n  distill: 0.5\n  zero_init: true\n"
    "  phases: [[max, 0.34], [kernel, 0.33], [all, 0.33]]\nnc: 80"
)


def test_killed_run_resumes_the_same_phases_and_subnets(tiny_data, tmp_path):
    cfg = tmp_path / "yolov8n-recipe-supernet.yaml"
    cfg.write_text(SUPERNET_FILE.read_text().replace("nc: 80", RECIPE, 1))
    args = _train_args(tiny_data, tmp_path, "full", 3, cfg)
    full = yolo(*args, cwd=tmp_path)
    assert full.returncode == 0, full.output
    assert (
        "the cycle ['max', 'min', 'random'] on every batch (same_batch), distill=0.5, "
        "phases: max to epoch 1, kernel to epoch 2, all to epoch 3"
    ) in full.output
    assert "nas: zero-initialised the last BatchNorm gamma of" in full.output
    rows = _rows(tmp_path / "full" / "nas_subnets.csv")
    by_epoch = {e: [r["subnet"] for r in rows if r["epoch"] == e] for e in ("1", "2", "3")}
    assert by_epoch["1"] == ["max", "max"]  # warm-up: the largest alone, once per batch
    assert by_epoch["2"] == by_epoch["3"] == ["max", "min", "random"] * 2  # the sandwich on each batch

    yolo_exe = str(Path(sys.executable).with_name("yolo"))
    run = tmp_path / "cut"
    args[args.index("name=full")] = "name=cut"
    proc = subprocess.Popen([yolo_exe, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    assert "zero-initialised" not in resumed.output  # the resumed run keeps its trained weights
    seq = [(r["epoch"], r["batch"], r["subnet"], r["arch_code"]) for r in _rows(run / "nas_subnets.csv")]
    assert seq == [(r["epoch"], r["batch"], r["subnet"], r["arch_code"]) for r in rows]
    assert [(r["epoch"], r["subnet"]) for r in _rows(run / "nas_epochs.csv")] == [
        (r["epoch"], r["subnet"]) for r in _rows(tmp_path / "full" / "nas_epochs.csv")
    ]


def _tiny(tmp_path, nc=2):
    from nas_plugin.supernet import load_supernet

    path = tmp_path / f"tiny-nc{nc}.yaml"
    path.write_text(TINY_SUPERNET.format(nc=nc))
    return load_supernet(path)


def _loss_setup(tmp_path, **nas):
    from ultralytics.cfg import get_cfg

    from nas_plugin.supernet import space_from_model
    from nas_plugin.training import NASState, SupernetCriterion

    torch.manual_seed(0)
    model = _tiny(tmp_path).train()
    model.args = get_cfg()
    space = space_from_model(model)
    state = NASState(parse_nas_config(nas), space, 0, S.max_arch(space))
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.4, 0.6, 0.3, 0.3]]),
    }
    return model, space, state, SupernetCriterion(model.init_criterion(), model, state), batch


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_same_batch_sandwich_puts_every_subnet_and_detached_distillation_into_one_backward(tmp_path):
    model, space, state, criterion, batch = _loss_setup(tmp_path, same_batch=True, num_random=1, distill=0.5)
    state.batch = sample(space, state.cfg, 0, 0, 0, 1)
    assert [k for k, _ in state.batch] == ["max", "min", "random"]
    set_arch(model, state.batch[0][1])
    loss, items = criterion(model(batch["img"]), batch)
    assert loss.shape == (3 + 2 * 4,)  # per subnet: box, cls, dfl (+ one distillation term for each student)
    assert model.model[1].active["depth"] == S.max_arch(space)["backbone"][0]["depth"]  # the largest is active again
    loss.sum().backward()
    combined = _grads(model)
    assert set(state.losses) == {"max", "min", "random"} and state.losses["min"][4] > 0 and state.losses["max"][4] == 0

    model.zero_grad()  # the same step by hand: each subnet's loss, the students against the largest's detached output
    stock = model.init_criterion()
    total, teacher = 0, None
    for _kind, arch in state.batch:
        set_arch(model, arch)
        preds = model(batch["img"])
        total = total + stock(preds, batch)[0].sum()
        if teacher is None:
            teacher = {k: preds[k].detach() for k in ("boxes", "scores")}
        else:
            total = total + 0.5 * distillation_loss(preds, teacher) * 2
    total.backward()
    by_hand = _grads(model)
    assert set(by_hand) == set(combined)
    for k in by_hand:
        torch.testing.assert_close(combined[k], by_hand[k], rtol=1e-4, atol=1e-6)


def test_one_subnet_per_batch_distils_from_a_no_grad_teacher(tmp_path):
    model, space, state, criterion, batch = _loss_setup(tmp_path, distill=1.0)
    state.batch = [("min", S.min_arch(space))]
    set_arch(model, S.min_arch(space))
    loss, _ = criterion(model(batch["img"]), batch)
    assert loss.shape == (4,) and loss[3] > 0
    loss[3].backward()  # the distillation term alone: only weights the smallest subnet uses get gradients
    assert (
        model.model[1].blocks[1].expand.conv.weight.grad is None
    )  # depth 1 of 2: the second block is the teacher's only


def test_zero_init_zeroes_the_last_gamma_of_residual_blocks_only(tmp_path):
    from nas_plugin.training import zero_init_residuals

    model = _tiny(tmp_path)
    blocks = [b for stage in model.model if hasattr(stage, "blocks") for b in stage.blocks]
    assert zero_init_residuals(model) == sum(b.residual for b in blocks) > 0
    for b in blocks:
        assert bool((b.project.bn.weight == 0).all()) == b.residual


def test_zero_init_covers_the_csp_supernets_shortcut_bottlenecks():
    from helpers import CSP_SUPERNET_FILE
    from nas_plugin.modules import ElasticC2f
    from nas_plugin.supernet import load_supernet
    from nas_plugin.training import zero_init_residuals

    model = load_supernet(CSP_SUPERNET_FILE.with_name("yolov8n-csp-supernet.yaml"))
    bottlenecks = [b for m in model.model if isinstance(m, ElasticC2f) for b in m.m]
    assert zero_init_residuals(model) == sum(b.add for b in bottlenecks) == 10  # the backbone's: 2 + 3 + 3 + 2
    for b in bottlenecks:
        assert bool((b.cv2.bn.weight == 0).all()) == b.add and bool((b.cv1.bn.weight != 0).all())


def test_init_loads_the_largest_subnet_and_refuses_another_class_count(tmp_path):
    from nas_plugin.extract import save_subnet
    from nas_plugin.supernet import space_from_model
    from nas_plugin.training import load_init

    trained = _tiny(tmp_path)
    save_subnet(trained, S.max_arch(space_from_model(trained)), tmp_path / "max")
    fresh = _tiny(tmp_path)
    load_init(fresh, str(tmp_path / "max" / "model.pt"))
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    with pytest.raises(
        NASError,
        match=(
            r"nas: init=.* does not match the supernet of y.yaml: its 'model.6.cv3.0.2.weight' has shape "
            r"\(2, 16, 1, 1\), the supernet's has shape \(3, 16, 1, 1\)"
        ),
    ):
        load_init(_tiny(tmp_path, nc=3), str(tmp_path / "max" / "model.pt"), "y.yaml")
    with pytest.raises(NASError, match="nas: init='nope.pt' in y.yaml does not exist"):
        load_init(fresh, "nope.pt", "y.yaml")


def test_yolo_train_starts_from_the_largest_subnet_and_refuses_a_foreign_checkpoint(tiny_data, tmp_path):
    from nas_plugin.extract import save_subnet
    from nas_plugin.supernet import space_from_model

    for nc in (6, 3):
        model = _tiny(tmp_path, nc)
        save_subnet(model, S.max_arch(space_from_model(model)), tmp_path / f"max{nc}")
    for nc, ok in ((6, True), (3, False)):
        cfg = tmp_path / f"init{nc}.yaml"
        cfg.write_text(TINY_SUPERNET.format(nc=6) + f"nas:\n  init: {tmp_path / f'max{nc}' / 'model.pt'}\n")
        proc = yolo(*_train_args(tiny_data, tmp_path, f"init{nc}", 1, cfg), cwd=tmp_path)
        assert (proc.returncode == 0) == ok, proc.output
        assert ("nas: weights initialised from" in proc.output) == ok
        assert ("does not match the supernet" in proc.output) != ok


class _RunsCode:
    """Unpickling it would create a file: what a malicious checkpoint could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


ORDER_CHECK = """
import csv, json, sys
from ultralytics import YOLO

seen = []


def on_model_save(trainer):  # right after last.pt is written: what a kill at this moment leaves on disk
    with open(trainer.save_dir / "nas_subnets.csv") as f:
        seen.append([trainer.epoch + 1, sorted({int(r["epoch"]) for r in csv.DictReader(f)})])


model = YOLO(sys.argv[1])
model.add_callback("on_model_save", on_model_save)
model.train(data=sys.argv[2], epochs=2, imgsz=64, batch=4, workers=0, device="cpu", plots=False,
            project=sys.argv[3], name="order", exist_ok=True)
print("SEEN " + json.dumps(seen))
"""


def test_an_epochs_subnets_are_on_disk_before_its_checkpoint(tiny_data, tmp_path):
    """A run killed just after last.pt resumes past that epoch, so the epoch's subnets must already be logged."""
    script = tmp_path / "order_check.py"
    script.write_text(ORDER_CHECK)
    proc = subprocess.run(
        [sys.executable, str(script), str(SUPERNET_YAML), str(tiny_data), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(proc.stdout.split("SEEN ", 1)[1])
    assert seen == [[1, [1]], [2, [1, 2]]]


def test_reading_a_run_never_executes_code_from_its_checkpoint(tmp_path):
    from nas_plugin.run_files import train_done

    (tmp_path / "weights").mkdir()
    torch.save({"optimizer": None, "payload": _RunsCode(tmp_path / "pwned")}, tmp_path / "weights" / "last.pt")
    with pytest.raises(TypeError, match="references types outside the supported Ultralytics checkpoint format"):
        train_done(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_resume_drops_the_epochs_it_redoes_and_a_row_torn_by_a_kill(tmp_path):
    from nas_plugin.training import _truncate_csv

    path = tmp_path / "nas_subnets.csv"
    path.write_text("epoch,batch,subnet\n1,0,max\n1,1,min\n2,0,max\n2,1,mi")  # killed while writing the last row
    _truncate_csv(path, "epoch", 2)
    assert path.read_text().splitlines() == ["epoch,batch,subnet", "1,0,max", "1,1,min"]
    path.write_text("epoch,batch,subnet\n1,0,max\n1")
    _truncate_csv(path, "epoch", 3)
    assert path.read_text().splitlines() == ["epoch,batch,subnet", "1,0,max"]


@pytest.mark.parametrize("left", ["", "epo"])  # killed before the header was flushed, or while writing it
def test_resume_gives_a_csv_killed_before_its_header_a_header(tmp_path, left):
    from nas_plugin.training import _append_csv, _truncate_csv

    path = tmp_path / "nas_epochs.csv"
    path.write_text(left)
    _truncate_csv(path, "epoch", 1)
    _append_csv(path, ("epoch", "subnet"), [(1, "max")])
    assert path.read_text().splitlines() == ["epoch,subnet", "1,max"]


def test_train_seconds_adds_up_a_resumed_run(tmp_path):
    from nas_plugin.run_files import train_seconds

    (tmp_path / "results.csv").write_text("epoch,time\n1,10.0\n2,21.0\n3,9.5\n4,20.0\n")  # resumed before epoch 3
    assert train_seconds(tmp_path) == 41.0


def test_benchmark_train_args_are_parsed_named_and_bad_ones_refused():
    from nas_plugin.run_files import parse_train_args, run_name, train_args_tag, train_command

    args = parse_train_args("optimizer=AdamW  lr0=0.002")
    assert args == {"optimizer": "AdamW", "lr0": "0.002"} and parse_train_args("") == {}
    assert (
        train_args_tag(args) == "_optimizer-AdamW_lr0-0.002" and train_args_tag({"cfg": "a/b.yaml"}) == "_cfg-a_b.yaml"
    )
    assert "lr0=0.002" in train_command("yolo", Path("runs/x"), "m.yaml", "d.yaml", epochs=1, **args)
    # the default length keeps the names runs had before; another length, setting or seed is a run of its own
    assert run_name("yolov8n", 30, {}, 0) == "yolov8n_seed0"
    assert run_name("yolov8n", 90, args, 1) == "yolov8n_90ep_optimizer-AdamW_lr0-0.002_seed1"
    with pytest.raises(NASError, match=r"key=value pairs .* 'lr0'"):
        parse_train_args("lr0")
    with pytest.raises(NASError, match=r"cannot set 'epochs'"):
        parse_train_args("epochs=3")
    with pytest.raises(NASError, match=r"^--finetune-args cannot set 'seed'"):
        parse_train_args("seed=1", "--finetune-args")


def test_split_metrics_validates_last_pt_on_the_named_split_once(tmp_path):
    from nas_plugin.integration import detection_model, read_model_yaml, save_checkpoint
    from nas_plugin.run_files import split_metrics
    from nas_plugin.synthetic_data import make_dataset

    data = make_dataset(tmp_path / "data", train=2, val=2, test=3, imgsz=64)
    model = detection_model({**read_model_yaml("yolov8n.yaml"), "nc": 6})
    model.args = {}
    (tmp_path / "run" / "weights").mkdir(parents=True)
    save_checkpoint(model, tmp_path / "run" / "weights" / "last.pt")
    found = split_metrics(tmp_path / "run", data, "test", 64)
    assert all(0 <= v <= 1 for v in found) and (data.parent / "labels" / "test.cache").is_file()  # read the test split
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["split"] == "test"
    (tmp_path / "run" / "weights" / "last.pt").unlink()  # kept: a re-run does not validate again
    assert split_metrics(tmp_path / "run", data, "test", 64) == found
