"""Elastic width: YAML validation, live channels through Concat, table keys and measurement, narrow subnets that
stock Ultralytics validates and exports without the plugin."""

import json
import os

import pytest
import torch
import yaml

from helpers import CSP_SUPERNET_FILE, randomize_bn, restated_prediction, yolo
from nas_plugin import lut as L
from nas_plugin import space as S
from nas_plugin.backends import get_backend
from nas_plugin.channel_order import apply_hidden_order, apply_order, hidden_order, output_order
from nas_plugin.channels import live_indices
from nas_plugin.errors import NASError
from nas_plugin.extract import extract, save_subnet
from nas_plugin.lut_build import build_lut
from nas_plugin.supernet import fingerprint, load_supernet, model_graph, named_archs, set_arch, space_from_model
from nas_plugin.training import CHANNEL_FIELDS, opened_fields

TINY_WIDTH = """
nc: 2
backbone:
  - [-1, 1, ElasticConv, [16, 3, 2, [0.5, 1.0]]] # 0-P1/2
  - [-1, 1, ElasticConv, [32, 3, 2, [0.5, 1.0]]] # 1-P2/4
  - [-1, 1, ElasticC2f, [32, True, [3], [1.0], [relu, silu], [1], [0.5, 1.0]]] # 2
  - [-1, 1, ElasticConv, [32, 3, 2, [0.5, 1.0]]] # 3-P3/8
  - [-1, 1, ElasticSPPF, [32, 5, [0.5, 1.0]]] # 4
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]] # 5
  - [[-1, 2], 1, Concat, [1]] # 6
  - [-1, 1, ElasticC2f, [16, False, [3], [1.0], [relu], [1], [0.5, 1.0]]] # 7
  - [[7, 4], 1, ElasticDetect, [nc]] # 8
"""  # every kind of width-following layer, small enough to build a table in seconds

TINY_MBCONV_WIDTH = """
nc: 2
backbone:
  - [-1, 1, ElasticConv, [16, 3, 2, [0.5, 1.0]]] # 0-P1/2
  - [-1, 2, ElasticMBConvStage, [16, 2, True, relu, [3, 5], [3], [1, 2], [0.5, 1.0]]] # 1-P2/4
  - [-1, 2, ElasticMBConvStage, [32, 2, False, hardswish, [3], [3, 4], [1, 2], [0.5, 1.0]]] # 2-P3/8
  - [-1, 1, ElasticSPPF, [32, 5, [0.5, 1.0]]] # 3
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]] # 4
  - [[-1, 1], 1, Concat, [1]] # 5
  - [-1, 2, ElasticMBottleneckCSP, [16, [3], [relu, mish], [1, 2], [0.5, 1.0]]] # 6
  - [[6, 3], 1, ElasticDetect, [nc]] # 7
"""  # the MBConv supernet's width-following layers, as small


@pytest.fixture(scope="module")
def csp_n():
    return load_supernet(CSP_SUPERNET_FILE.with_name("yolov8n-csp-supernet.yaml"))


@pytest.fixture(scope="module")
def tiny_width(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_width") / "tiny-width-supernet.yaml"
    path.write_text(TINY_WIDTH)
    model = load_supernet(path)
    return path, model, space_from_model(model)


@pytest.mark.parametrize(
    "widths, message",
    [
        ("[0.5, 1.5]", "ElasticC2f width 1.5 is not allowed; width must be a number in (0, 1]"),
        ("[0, 1.0]", "ElasticC2f width 0 is not allowed; width must be a number in (0, 1]"),
        ("[1.0, 0.5]", "ElasticC2f width choices [1.0, 0.5] must list each width once, smallest to largest, ending at"),
        ("[0.5, 0.75]", "ElasticC2f width choices [0.5, 0.75] must list each width once, smallest to largest, ending"),
    ],
)
def test_bad_width_choices_name_the_value_and_what_is_allowed(tmp_path, widths, message):
    bad = tmp_path / "tiny-bad.yaml"
    bad.write_text(TINY_WIDTH.replace("[relu], [1], [0.5, 1.0]", f"[relu], [1], {widths}"))
    with pytest.raises(NASError) as e:
        load_supernet(bad)
    assert message in str(e.value)


def test_widths_resolve_to_distinct_channel_counts(csp_n):
    """A share rounds up to a multiple of 8; one that gives a larger share's count is dropped (16 x 0.75 -> 16)."""
    units = {u["layer"]: u for _, _, u in S.units(space_from_model(csp_n))}
    assert units[0]["per_unit"]["width"] == [0.5, 1.0]  # YOLOv8n's 16-channel stem: 8 or 16
    assert units[4]["per_unit"]["width"] == [0.5, 0.75, 1.0]
    assert model_graph(csp_n)[4]["channels"] == [32, 48, 64]
    s = load_supernet(CSP_SUPERNET_FILE.with_name("yolov8s-csp-supernet.yaml"))
    assert model_graph(s)[0]["channels"] == [16, 24, 32]


def test_width_is_a_gene_everywhere_the_space_is_read(csp_n):
    space = space_from_model(csp_n)
    assert all(a["width"] == 1.0 for a in S.max_arch(space)["backbone"] + S.max_arch(space)["head"])
    assert all(a["width"] == 0.5 for a in S.min_arch(space)["backbone"] + S.min_arch(space)["head"])
    for seed in range(5):
        arch = S.random_arch(space, seed=seed)
        assert S.decode(space, S.encode(space, arch)) == arch
        assert json.loads(json.dumps(arch)) == S.validate_arch(space, arch)
    no_width = {s: [{k: v for k, v in u.items() if k != "width"} for u in S.max_arch(space)[s]] for s in S.SECTIONS}
    with pytest.raises(NASError, match=r"arch\['backbone'\]\[0\] is missing \['width'\]"):
        S.validate_arch(space, no_width)  # an arch made for the space before width
    bad = S.max_arch(space)
    bad["head"][0]["width"] = 0.6
    with pytest.raises(
        NASError, match=r"arch\['head'\]\[0\]\['width'\] = 0.6 is not allowed; choose from \[0.5, 0.75, 1.0\]"
    ):
        S.validate_arch(space, bad)


def test_live_channels_after_a_concat_are_not_contiguous(csp_n):
    """Layer 11 concatenates the upsampled SPPF (256 wide) and P4 (128 wide): half of each is [0:128] + [256:320]."""
    space = space_from_model(csp_n)
    live = live_indices(model_graph(csp_n), space, S.min_arch(space))
    assert live[11] == [*range(128), *range(256, 256 + 64)]
    assert live[10] == live[9] == list(range(128))


def test_a_stock_layer_cannot_read_an_elastic_width(tmp_path):
    bad = tmp_path / "tiny-stock-conv.yaml"
    bad.write_text(TINY_WIDTH.replace("ElasticConv, [32, 3, 2, [0.5, 1.0]]] # 3", "Conv, [32, 3, 2]] # 3"))
    with pytest.raises(NASError, match=r"layer 3 \(Conv\) reads layer 2, which has width choices, but cannot follow"):
        model_graph(load_supernet(bad))


def test_a_table_for_a_space_without_width_is_refused(csp_n, tmp_path):
    """The fingerprint covers the space, so a table built before width was added names the mismatch."""
    table = {"format": L.FORMAT, "meta": {k: None for k in L.META_KEYS}, "reference": {"median_us": 1.0}, "entries": {}}
    table["meta"]["fingerprint"] = "0123456789abcdef"
    path = tmp_path / "old.json"
    path.write_text(json.dumps(table))
    with pytest.raises(NASError, match="was built for another supernet"):
        L.load_lut(path, fingerprint(csp_n))


def test_table_keys_name_input_widths_and_split_the_csp_block(csp_n):
    """Every arch's keys are in the table; C2f's input conv is keyed by input width, its body by its own choices."""
    graph = model_graph(csp_n)
    space = space_from_model(csp_n)
    meta = {"fixed_layers": [i for i, n in enumerate(graph) if n["op"] != "unit"], "graph": graph}
    keys = L.all_keys(space, meta)
    assert len(keys) < 1000  # without the split, each head C2f alone would need 7 x 3 x 48 entries
    for seed in range(50):
        assert set(L.arch_keys(space, S.random_arch(space, seed=seed), meta)) <= set(keys)
    arch_keys = L.arch_keys(space, S.min_arch(space), meta)
    assert "layer12/in/c1=192/act=relu/width=0.5" in arch_keys  # 128 of SPPF's 256 + 64 of P4's 128
    assert "layer12/body/depth=1/kernel=3/expand=0.5/act=relu/width=0.5" in arch_keys
    assert "layer22/c1=32+64+128" in arch_keys and "layer0/depth=1/width=0.5" in arch_keys
    assert keys["layer11/c1=128+64"] == ("fixed", 11, {"c1": (128, 64)})


def test_width_table_is_measured_and_predicts_the_sum_of_its_parts(tiny_width, tmp_path):
    path, model, space = tiny_width
    out = tmp_path / "lut.json"
    lut = build_lut(model, 64, get_backend("openvino"), out, calib_subnets=2, source=path, rounds=1)
    assert set(lut["entries"]) == set(L.all_keys(space, lut["meta"]))
    assert {"layer6/c1=16+16", "layer8/c1=8+16", "layer7/in/c1=32/act=relu/width=0.5"} <= set(lut["entries"])
    arch = S.random_arch(space, seed=3)
    parts = [lut["entries"][k] for k in L.arch_keys(space, arch, lut["meta"])]
    params = sum(e["params"] for e in parts)
    assert params == sum(p.numel() for p in extract(model, arch).parameters())  # narrowed entries count their weights
    assert L.predict_us(L.load_lut(out, fingerprint(model), 64), space, arch) == pytest.approx(
        restated_prediction(lut, space, arch)
    )


def test_mbconv_width_table_keys_each_block_by_the_widths_it_sees(tmp_path):
    """An MBConv stage's first block is keyed by its input and output widths, later blocks by the output width; the
    MBottleneckCSP after a Concat is split into its input conv and body; the entries' weights add up to the subnet's,
    and narrow subnets extract exactly."""
    path = tmp_path / "tiny-mbconv-width-supernet.yaml"
    path.write_text(TINY_MBCONV_WIDTH)
    model = load_supernet(path)
    space = space_from_model(model)
    lut = build_lut(model, 64, get_backend("openvino"), tmp_path / "lut.json", calib_subnets=2, source=path, rounds=1)
    assert set(lut["entries"]) == set(L.all_keys(space, lut["meta"]))
    assert {
        "layer1/b0/c1=8/width=0.5/kernel=5/expand=3",
        "layer1/b1/width=0.5/kernel=5/expand=3",
        "layer2/b0/c1=16/width=1.0/kernel=3/expand=4",
        "layer6/in/c1=24/act=mish/width=0.5",  # 16 of the upsampled 32 + 8 of layer 1's 16
        "layer6/body/depth=2/kernel=3/act=mish/width=1.0",
    } <= set(lut["entries"])
    randomize_bn(model)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for arch in (S.min_arch(space), *(S.random_arch(space, seed=i) for i in range(4))):
        parts = [lut["entries"][k] for k in L.arch_keys(space, arch, lut["meta"])]
        static = extract(model, arch)
        assert sum(e["params"] for e in parts) == sum(p.numel() for p in static.parameters())
        set_arch(model, arch)
        with torch.no_grad():
            torch.testing.assert_close(static.eval()(x)[0], model.eval()(x)[0], atol=1e-5, rtol=1e-5)


def test_an_mbconv_stage_whose_first_block_is_residual_has_no_width_choices(tmp_path):
    path = tmp_path / "bad-supernet.yaml"
    path.write_text(TINY_MBCONV_WIDTH.replace("[32, 2, False, hardswish", "[16, 1, False, hardswish"))
    with pytest.raises(NASError, match=r"ElasticMBConvStage width choices \[0.5, 1.0\] need stride 2 or c1 != c2"):
        load_supernet(path)


def test_narrow_yolov8n_is_stock_and_deploys_without_the_plugin(tiny_data, tmp_path):
    """YOLOv8n at half width everywhere extracts to stock rows (its head follows P3's width): `yolo val` and
    `yolo export` need no plugin."""
    nc = len(yaml.safe_load(tiny_data.read_text())["names"])
    path = tmp_path / "yolov8n-csp-supernet.yaml"
    path.write_text(CSP_SUPERNET_FILE.read_text().replace("nc: 80", f"nc: {nc}"))
    supernet = load_supernet(path)
    arch = named_archs(supernet)["yolov8n"]
    for unit in arch["backbone"] + arch["head"]:
        unit["width"] = 0.5
    static = save_subnet(supernet, arch, tmp_path / "half")
    rows = static.yaml["backbone"] + static.yaml["head"]
    assert {r[2] for r in rows} == {"Conv", "C2f", "SPPF", "nn.Upsample", "Concat", "Detect"}
    assert rows[0][3][0] == 32 and rows[2][3][0] == 64  # YOLOv8n's 64/128 halved, before the 0.25 width multiple
    assert static.model[-1].cv3[0][0].conv.out_channels == max(32, nc)  # the class branch follows P3's 32
    env = {**os.environ, "NAS_PLUGIN_DISABLE": "1"}
    weights = tmp_path / "half" / "model.pt"
    val = yolo("val", f"model={weights}", f"data={tiny_data}", "imgsz=64", "device=cpu", cwd=tmp_path, env=env)
    assert val.returncode == 0, val.output
    exp = yolo("export", f"model={weights}", "format=onnx", "imgsz=64", cwd=tmp_path, env=env)
    assert exp.returncode == 0, exp.output
    assert weights.with_suffix(".onnx").is_file()


def _output_sum(out):
    """A scalar that every tensor of a training-mode output feeds (a stand-in loss)."""
    return sum(
        v.float().mean() for v in (out.values() if isinstance(out, dict) else out) if isinstance(v, torch.Tensor)
    )


def test_supernet_with_width_trains_a_sampled_step(csp_n):
    """Narrow subnets train on shared weights: gradients reach only the active channels of a narrowed layer."""
    model = csp_n.train()
    space = space_from_model(model)
    set_arch(model, S.min_arch(space))
    _output_sum(model(torch.rand(2, 3, 64, 64))).backward()
    grad = model.model[1].conv.weight.grad  # ElasticConv 32 -> 16 channels at half width
    assert grad[:16].abs().sum() > 0 and not grad[16:].any()
    model.zero_grad()
    set_arch(model, S.max_arch(space))


def test_subnets_of_several_widths_train_in_one_backward_pass(csp_n):
    """`same_batch` runs the whole sandwich before one backward: a narrow subnet's BatchNorm statistics update must
    not break the graph of the full-width subnet before it."""
    model = csp_n.train()
    space = space_from_model(model)
    loss = 0
    for arch in (S.max_arch(space), S.min_arch(space), S.random_arch(space, seed=0)):
        set_arch(model, arch)
        loss = loss + _output_sum(model(torch.rand(2, 3, 64, 64)))
    loss.backward()
    assert model.model[1].conv.weight.grad[16:].any()  # the full width trained too
    model.zero_grad()
    set_arch(model, S.max_arch(space))


@pytest.mark.parametrize(
    "yaml_name, layers, groups", [("yolov8n-csp-supernet.yaml", 16, 55), ("yolov8n-mbconv-supernet.yaml", 13, 57)]
)
def test_sorting_channels_by_importance_keeps_what_the_full_network_computes(yaml_name, layers, groups):
    """Each width layer's outputs go most important first (L1 of the weights reading them, across Concat), and its
    readers' columns and the optimizer's momentum move with them (inside an MBConv stage too: every block's
    projection and the later blocks' inputs), then the hidden channels inside every block (C2f and MBottleneckCSP
    halves and bottlenecks, MBConv expansions with SE, SPPF, the head's branches): the largest subnet computes the
    same."""
    model = load_supernet(CSP_SUPERNET_FILE.with_name(yaml_name)).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # trained-looking weights: importances differ and BN is not at init
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    space = space_from_model(model)
    set_arch(model, S.max_arch(space))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        optimizer.state[p]["momentum_buffer"] = p.detach().clone()
    with torch.no_grad():
        before = model(x)
    orders = output_order(model)
    assert len(orders) == layers and any((perm != torch.arange(len(perm))).any() for perm in orders.values())
    apply_order(model, orders, optimizer)
    hidden = hidden_order(model, CHANNEL_FIELDS)
    assert len(hidden) == groups and all((perm != torch.arange(len(perm))).any() for perm in hidden.values())
    apply_hidden_order(model, hidden, optimizer)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after[0], before[0], atol=1e-4, rtol=1e-5)
    assert all((perm == torch.arange(len(perm))).all() for perm in output_order(model).values())  # now in order
    assert all((perm == torch.arange(len(perm))).all() for perm in hidden_order(model, CHANNEL_FIELDS).values())
    assert all(torch.equal(optimizer.state[p]["momentum_buffer"], p) for p in model.parameters())


def test_channels_are_sorted_when_narrower_widths_start_training():
    cfg = {"phases": [["max", 0.4], ["all", 0.6]]}
    space = {"backbone": [{"layer": 0, "depth": [1], "per_unit": {"width": [0.5, 1.0]}, "per_block": {}}], "head": []}
    assert {e: opened_fields(space, cfg, e, 10) for e in range(10) if opened_fields(space, cfg, e, 10)} == {
        4: {"width"}
    }
    assert not any(opened_fields(space, {"phases": [["all", 1.0]]}, e, 10) for e in range(10))  # no warm-up: unsorted
    space["backbone"][0]["per_unit"]["expand"] = [0.5, 1.0]  # expand opens first, width last: each sorted as it opens
    cfg = {"phases": [["max", 0.4], ["expand", 0.2], ["all", 0.4]]}
    assert {e: opened_fields(space, cfg, e, 10) for e in range(10) if opened_fields(space, cfg, e, 10)} == {
        4: {"expand"},
        6: {"width"},
    }
    cfg = {"phases": [["max", 0.4], ["expand", 0.05], ["all", 0.55]]}  # expand rounds to no epochs: opens with width
    assert {e: opened_fields(space, cfg, e, 2) for e in range(2) if opened_fields(space, cfg, e, 2)} == {
        1: {"expand", "width"}
    }


def test_yolo_train_sorts_channels_when_widths_open_and_trains_narrow_subnets(tiny_data, tmp_path):
    """The stock `yolo train` on the CSP supernet with its shipped recipe: warm-up on the largest, then (the other
    phases round to no epochs in 2) channels sorted and every width sampled; the best.pt it writes extracts its
    smallest subnet."""
    cfg = tmp_path / "yolov8n-csp-supernet.yaml"
    cfg.write_text(CSP_SUPERNET_FILE.read_text())
    args = ["train", f"model={cfg}", f"data={tiny_data}", "epochs=2", "imgsz=64", "batch=4", "workers=0"]
    proc = yolo(*args, "device=cpu", "plots=False", f"project={tmp_path}", "name=w", cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert "nas: output channels of 16 layers with width choices sorted by importance" in proc.output
    assert "groups of hidden channels that expand and width narrow sorted by importance" in proc.output
    rows = (tmp_path / "w" / "nas_subnets.csv").read_text().splitlines()[1:]
    assert {r.split(",")[2] for r in rows if r.startswith("1,")} == {"max"}
    assert {r.split(",")[2] for r in rows if r.startswith("2,")} - {"max"}  # narrower subnets after the warm-up
    trained = load_supernet(tmp_path / "w" / "weights" / "best.pt")
    static = save_subnet(trained, S.min_arch(space_from_model(trained)), tmp_path / "min")
    assert static.model[0].conv.out_channels == 8
