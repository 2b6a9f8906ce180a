"""Elastic modules: YAML validation, once-for-all weight sharing and per-width BatchNorm."""

import pytest
import torch

from helpers import SUPERNET_FILE, yolo
from nas_plugin.elastic_ops import ElasticConvBN
from nas_plugin.errors import NASError
from nas_plugin.modules import ElasticMBConvStage, MBConvStage, MBottleneckCSP
from nas_plugin.supernet import load_supernet


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "[24, 2, False, relu, [3, 5, 7]",
            "[24, 2, False, relu, [3, 4, 7]",
            "ElasticMBConvStage kernel 4 is not allowed; kernel must be an odd integer >= 1",
        ),
        (
            "[40, 2, True, relu, [3, 5, 7], [3, 4, 6]",
            "[40, 2, True, relu, [3, 5, 7], [0, 4, 6]",
            "ElasticMBConvStage expand 0 is not allowed; expand must be a number >= 1",
        ),
        (
            "[64, [3, 5], [relu, leakyrelu, mish]",
            "[64, [3, 5], [relu, gelu, mish]",
            "ElasticMBottleneckCSP activation 'gelu' is not allowed; activation must be one of",
        ),
        (
            "[80, 2, False, hardswish, [3, 5, 7], [3, 4, 6], [2, 3, 4],",
            "[80, 2, False, hardswish, [3, 5, 7], [3, 4, 6], [2, 3, 5],",
            "ElasticMBConvStage depth 5 is not allowed; depth must be an integer from 1 to the row's n=4",
        ),
        (
            "[-1, 4, ElasticMBConvStage, [112",
            "[-1, 3, ElasticMBConvStage, [112",
            "ElasticMBConvStage depth 4 is not allowed; depth must be an integer from 1 to the row's n=3",
        ),
    ],
)
def test_bad_yaml_choices_are_refused_with_the_value_and_allowed_set(tmp_path, old, new, message):
    text = SUPERNET_FILE.read_text()
    assert old in text
    bad = tmp_path / "yolov8n-bad-supernet.yaml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(NASError) as e:
        load_supernet(bad)
    assert message in str(e.value)


def test_stock_cli_reports_a_bad_yaml_choice(tmp_path, tiny_data):
    bad = tmp_path / "yolov8n-bad-supernet.yaml"
    bad.write_text(
        SUPERNET_FILE.read_text().replace("[24, 2, False, relu, [3, 5, 7]", "[24, 2, False, relu, [3, 4, 7]", 1)
    )
    proc = yolo("train", f"model={bad}", f"data={tiny_data}", "epochs=1", "imgsz=64", "device=cpu", cwd=tmp_path)
    assert proc.returncode != 0
    assert "ElasticMBConvStage kernel 4 is not allowed" in proc.output


def test_static_modules_validate_per_block_lists():
    with pytest.raises(NASError, match=r"MBConvStage has 2 kernel values \[3, 5\] for n=3 blocks; give one or 3"):
        MBConvStage(16, 24, 3, 2, False, "relu", [3, 5], 4)
    with pytest.raises(NASError, match="MBottleneckCSP activation 'gelu' is not allowed"):
        MBottleneckCSP(32, 32, 1, 3, "gelu")


def test_smaller_kernel_uses_the_centre_of_the_largest():
    torch.manual_seed(0)
    conv = ElasticConvBN(8, 8, 7).eval()
    x = torch.randn(1, 8, 12, 12)
    ref = conv(x, 8, k=3)
    with torch.no_grad():
        w = conv.conv.weight
        centre = w[:, :, 2:5, 2:5].clone()
        w.normal_()  # change everything ...
        w[:, :, 2:5, 2:5] = centre  # ... but the 3x3 centre
    assert torch.equal(conv(x, 8, k=3), ref)
    assert not torch.allclose(conv(x, 8, k=5), ref)


def test_smaller_expand_uses_leading_channels_and_its_own_bn_slice():
    torch.manual_seed(0)
    stage = ElasticMBConvStage(16, 16, 2, 1, True, "relu", [3], [3, 6], [1, 2])
    stage.set_active({"depth": 1, "kernel": [3], "expand": [3]})
    bn = stage.blocks[0].expand.bn
    before = bn.running_mean.clone()
    stage.train()(torch.randn(4, 16, 8, 8))
    changed = (bn.running_mean != before).nonzero().flatten()
    assert changed.max().item() < 48 and len(changed) > 0  # expand 3 x 16 = 48 active channels of 96
    # Blocks beyond the active depth are not run at all
    deep = stage.blocks[1].expand.bn.running_mean.clone()
    stage(torch.randn(4, 16, 8, 8))
    assert torch.equal(stage.blocks[1].expand.bn.running_mean, deep)
